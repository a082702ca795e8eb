#!/usr/bin/python3
"""Turn a folder of video clips into diffusion-model latents: one safetensors
file per clip plus a JSONL manifest, several GStreamer pipelines at a time.

    examples/dataset_builder.py --model MODEL --input clips/ --output latents/ \\
        [--jobs 2] [--width 256 --height 256] [--batch-size 4] [--backend auto]

Every clip runs through

    filesrc ! decodebin ! videoconvert ! videoscale ! video/x-raw,width=W,height=H
      ! vaeencode model=M batch-size=B ! safetensorsmux ! filesink location=OUT.tmp

and OUT.tmp becomes OUT (latents/<clip path>.safetensors) only when the
pipeline reached EOS without an error; then a line is appended to
latents/manifest.jsonl:

    {"clip": "a/b.mp4", "latents": "a/b.safetensors", "frames": 48,
     "width": 256, "height": 256, "latent_shape": [48, 32, 32, 32],
     "framerate": "24/1", "model": "...", "seconds": 3.2}

A clip is a video file whose extension is in --extensions, or a folder of
numbered images (frame_0001.png, frame_0002.png, ...; --fps gives their
frame rate).  Runs are resumable: clips whose latent file exists and is in the
manifest are skipped; a run that was killed leaves only *.tmp files, and those
clips are done again.  A clip that fails is reported on stderr and the run goes
on; the exit status is 1 when any clip failed (2 for bad arguments, 130 on
Ctrl-C).

Needs Debian's python3-gst-1.0 (PyGObject + GStreamer); run it with
/usr/bin/python3.  Point GST_PLUGIN_PATH at the plugin (build/gst/vae) unless it
is installed.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

MANIFEST = "manifest.jsonl"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def log(msg):
    Progress.clear_line()
    print(f"dataset_builder: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- clips


class Clip:
    def __init__(self, rel, path, kind):
        self.rel = rel            # path relative to --input, '/' separated
        self.path = path          # absolute path of the file or image folder
        self.kind = kind          # "video" or "images"
        self.out_rel = None       # latent file, relative to --output
        self.frames = 0
        self.error = None


def image_sequence(folder):
    """(pattern, first, last) for multifilesrc when FOLDER holds images named
    PREFIX<number>SUFFIX with consecutive numbers; None when it holds no
    images; raises ValueError when they are not such a sequence."""
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        return None
    rx = re.compile(r"^(.*?)(\d+)(\.[^.]+)$")
    parsed = [rx.match(n) for n in names]
    if not all(parsed):
        raise ValueError("image names must end in a frame number (frame_0001.png, ...)")
    prefix, digits, suffix = parsed[0].group(1), parsed[0].group(2), parsed[0].group(3)
    width = len(digits)
    numbers = []
    for m in parsed:
        if m.group(1) != prefix or m.group(3) != suffix:
            raise ValueError(f"mixed image names ({names[0]} and {m.group(0)})")
        if len(m.group(2)) != width:
            raise ValueError("frame numbers must all have the same number of digits")
        numbers.append(int(m.group(2)))
    numbers.sort()
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise ValueError("frame numbers are not consecutive")
    pattern = os.path.join(folder, prefix.replace("%", "%%") + f"%0{width}d" + suffix)
    return pattern, numbers[0], numbers[-1]


def find_clips(input_dir, extensions, output_dir):
    clips = []
    out_abs = os.path.abspath(output_dir)
    for dirpath, dirnames, filenames in os.walk(input_dir):
        dirnames[:] = sorted(d for d in dirnames
                             if os.path.abspath(os.path.join(dirpath, d)) != out_abs)
        rel_dir = os.path.relpath(dirpath, input_dir)
        has_images = any(n.lower().endswith(IMAGE_EXTENSIONS) for n in filenames)
        if has_images and rel_dir != ".":
            clips.append(Clip(rel_dir.replace(os.sep, "/"), os.path.abspath(dirpath), "images"))
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower().lstrip(".") in extensions:
                rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
                clips.append(Clip(rel, os.path.abspath(os.path.join(dirpath, name)), "video"))
    # Latent file names: the clip's path without its extension; when two
    # clips would share one (a.mp4 and a.avi), the extension stays.
    stems = {}
    for c in clips:
        stem = c.rel if c.kind == "images" else os.path.splitext(c.rel)[0]
        stems.setdefault(stem, []).append(c)
    for stem, group in stems.items():
        for c in group:
            base = stem if len(group) == 1 else c.rel
            c.out_rel = base + ".safetensors"
    clips.sort(key=lambda c: c.rel)
    return clips


# ---------------------------------------------------------------- manifest


def load_manifest(output_dir):
    """Entries of the manifest whose latent file exists, by clip; the manifest
    is rewritten without the others (atomically)."""
    path = os.path.join(output_dir, MANIFEST)
    entries = {}
    if not os.path.exists(path):
        return entries
    dropped = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
                latents = os.path.join(output_dir, e["latents"])
                clip = e["clip"]
            except (ValueError, KeyError, TypeError):
                dropped += 1
                continue
            if os.path.isfile(latents):
                entries[clip] = e          # the last line for a clip wins
            else:
                dropped += 1
    if dropped:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for e in entries.values():
                f.write(json.dumps(e) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return entries


def append_manifest(output_dir, entry):
    with open(os.path.join(output_dir, MANIFEST), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- progress


class Progress:
    tty = sys.stderr.isatty()
    drawn = False

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.running = 0
        self.frames = 0
        self.start = time.monotonic()
        self.last_plain = 0.0

    @classmethod
    def clear_line(cls):
        if cls.tty and cls.drawn:
            sys.stderr.write("\r\x1b[K")
            cls.drawn = False

    def draw(self, final=False):
        finished = self.done + self.failed + self.skipped
        width = 30
        filled = width * finished // self.total if self.total else width
        elapsed = time.monotonic() - self.start
        fps = self.frames / elapsed if elapsed > 0 else 0.0
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total} clips"
                f" | {self.frames} frames ({fps:.1f}/s) | {self.running} running"
                f" | {self.failed} failed | {elapsed:.0f}s")
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
            sys.stderr.flush()
            Progress.drawn = not final
        elif final or time.monotonic() - self.last_plain >= 10:
            # Not a terminal (a log file): a line every 10 s and at the end.
            self.last_plain = time.monotonic()
            print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pipelines


class Job:
    """One clip's pipeline."""

    def __init__(self, builder, clip):
        self.b = builder
        self.clip = clip
        self.final = os.path.join(builder.args.output, clip.out_rel)
        self.tmp = self.final + ".tmp"
        self.frames = 0
        self.lock = threading.Lock()
        self.latent_caps = None
        self.video_caps = None
        self.started = time.monotonic()
        self.pipeline = None
        self.bus_watch = None

    def build(self):
        a = self.b.args
        os.makedirs(os.path.dirname(self.final) or ".", exist_ok=True)
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        size = ""
        if a.width:
            size += f",width={a.width}"
        if a.height:
            size += f",height={a.height}"
        if self.clip.kind == "images":
            pattern, first, last = image_sequence(self.clip.path)
            ext = os.path.splitext(pattern)[1].lower()
            mime = "image/png" if ext == ".png" else "image/jpeg"
            source = (f"multifilesrc name=src start-index={first} stop-index={last}"
                      f" caps={mime},framerate={a.fps}")
        else:
            source = "filesrc name=src"
        desc = (f"{source} ! decodebin name=dec "
                f"videoconvert name=conv ! videoscale ! video/x-raw{size} "
                f"! vaeencode name=enc ! safetensorsmux name=mux ! filesink name=sink")
        p = Gst.parse_launch(desc)
        self.pipeline = p
        src = p.get_by_name("src")
        src.set_property("location", pattern if self.clip.kind == "images" else self.clip.path)
        enc = p.get_by_name("enc")
        enc.set_property("model", a.model)
        enc.set_property("batch-size", a.batch_size)
        Gst.util_set_object_arg(enc, "backend", a.backend)
        if a.threads is not None:
            enc.set_property("threads", a.threads)
        p.get_by_name("sink").set_property("location", self.tmp)
        p.get_by_name("dec").connect("pad-added", self.on_pad_added)
        enc.get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self.on_video_event)
        enc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM,
                           self.on_latent)
        bus = p.get_bus()
        self.bus_watch = bus.add_watch(GLib.PRIORITY_DEFAULT, self.on_message)

    def on_pad_added(self, dec, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if name.startswith("video/"):
            conv_sink = self.pipeline.get_by_name("conv").get_static_pad("sink")
            if not conv_sink.is_linked():
                pad.link(conv_sink)
                return
        # Audio, subtitles, a second video stream: into a fakesink so that
        # nothing upstream stops on not-linked.
        sink = Gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        sink.set_property("async", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_video_event(self, pad, info):
        ev = info.get_event()
        if ev.type == Gst.EventType.CAPS:
            self.video_caps = ev.parse_caps()
        return Gst.PadProbeReturn.OK

    def on_latent(self, pad, info):
        if info.type & Gst.PadProbeType.BUFFER:
            with self.lock:
                self.frames += 1
            self.b.add_frames(1)
        else:
            ev = info.get_event()
            if ev is not None and ev.type == Gst.EventType.CAPS:
                self.latent_caps = ev.parse_caps()
        return Gst.PadProbeReturn.OK

    def start(self):
        ret = self.pipeline.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.FAILURE:
            # The bus carries the element's error message; let on_message
            # report it, and make sure something is reported if it does not.
            GLib.timeout_add(500, self.fail_if_running, "could not start the pipeline")

    def fail_if_running(self, why):
        if self.pipeline is not None:
            self.finish(why)
        return False

    def stop(self):
        if self.bus_watch is not None:
            GLib.source_remove(self.bus_watch)
            self.bus_watch = None
        if self.pipeline is not None:
            self.pipeline.set_state(Gst.State.NULL)
            self.pipeline = None

    def on_message(self, bus, msg):
        if self.pipeline is None:
            return False
        if msg.type == Gst.MessageType.EOS:
            self.finish(None)
            return False
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            src = msg.src.get_name() if msg.src else "?"
            why = f"{src}: {err.message}"
            if debug:
                why += f" ({debug.strip().splitlines()[-1]})"
            self.finish(why)
            return False
        if msg.type == Gst.MessageType.WARNING and self.b.args.verbose:
            err, debug = msg.parse_warning()
            log(f"{self.clip.rel}: warning: {err.message}")
        return True

    def finish(self, error):
        self.stop()
        seconds = time.monotonic() - self.started
        if error is None and self.frames == 0:
            error = "no video frames came out (no video stream?)"
        if error is None and not os.path.isfile(self.tmp):
            error = f"the pipeline reached EOS but {self.tmp} was not written"
        if error is not None:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
            self.b.job_done(self, error)
            return
        os.replace(self.tmp, self.final)
        entry = {"clip": self.clip.rel, "latents": self.clip.out_rel, "frames": self.frames}
        entry.update(self.describe())
        entry["model"] = self.b.args.model
        entry["seconds"] = round(seconds, 3)
        append_manifest(self.b.args.output, entry)
        self.b.job_done(self, None)

    def describe(self):
        d = {"width": None, "height": None}
        if self.video_caps is not None and self.video_caps.get_size():
            s = self.video_caps.get_structure(0)
            ok, w = s.get_int("width")
            if ok:
                d["width"] = w
            ok, h = s.get_int("height")
            if ok:
                d["height"] = h
            ok, n, dd = s.get_fraction("framerate")
            if ok:
                d["framerate"] = f"{n}/{dd}"
        if self.latent_caps is not None and self.latent_caps.get_size():
            s = self.latent_caps.get_structure(0)
            dims = s.get_string("dimensions")
            if dims:
                w, h, c = (int(x) for x in dims.split(":")[:3])
                d["latent_shape"] = [self.frames, c, h, w]
            types = s.get_string("types")
            if types:
                d["latent_dtype"] = types
        return d


class Builder:
    def __init__(self, args, clips):
        self.args = args
        self.queue = list(clips)
        self.running = []
        self.failures = []
        self.progress = Progress(len(clips))
        self.frames_lock = threading.Lock()
        self.loop = GLib.MainLoop()
        self.interrupted = False

    def add_frames(self, n):
        with self.frames_lock:
            self.progress.frames += n

    def fill(self):
        while self.queue and len(self.running) < self.args.jobs and not self.interrupted:
            clip = self.queue.pop(0)
            job = Job(self, clip)
            try:
                job.build()
            except (GLib.Error, ValueError, OSError) as e:
                job.stop()
                self.record_failure(clip, str(e))
                continue
            self.running.append(job)
            self.progress.running = len(self.running)
            job.start()
        if not self.running:
            self.loop.quit()

    def record_failure(self, clip, why):
        self.progress.failed += 1
        self.failures.append((clip.rel, why))
        log(f"FAILED {clip.rel}: {why}")

    def job_done(self, job, error):
        if job in self.running:
            self.running.remove(job)
        self.progress.running = len(self.running)
        if error is None:
            self.progress.done += 1
            if self.args.verbose:
                log(f"done {job.clip.rel} -> {job.clip.out_rel} ({job.frames} frames)")
        else:
            self.record_failure(job.clip, error)
        self.progress.draw()
        # Start the next one from the main loop, not from inside this handler.
        GLib.idle_add(self.idle_fill)

    def idle_fill(self):
        self.fill()
        return False

    def tick(self):
        self.progress.draw()
        return True

    def on_sigint(self):
        if self.interrupted:
            return True
        self.interrupted = True
        log("interrupted: stopping the running pipelines (their clips will be redone)")
        for job in list(self.running):
            job.stop()
            if os.path.exists(job.tmp):
                os.unlink(job.tmp)
        self.running.clear()
        self.progress.running = 0
        self.loop.quit()
        return True

    def run(self):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, self.on_sigint)
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, self.on_sigint)
        GLib.timeout_add(250, self.tick)
        GLib.idle_add(self.idle_fill)
        self.loop.run()
        self.progress.draw(final=True)


# ---------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Encode a folder of video clips into latent files (one safetensors "
                    "file per clip) and a manifest, with GStreamer and vaeencode.")
    ap.add_argument("--model", required=True,
                    help="model path as vaeencode's model property takes it "
                         "(diffusers folder, LDM .safetensors, TAESD file or folder)")
    ap.add_argument("--input", required=True, metavar="DIR", help="folder of clips (searched recursively)")
    ap.add_argument("--output", required=True, metavar="DIR", help="folder for the latent files and manifest.jsonl")
    ap.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="pipelines at a time (default 2)")
    ap.add_argument("--width", type=int, help="scale frames to this width (default: the clip's)")
    ap.add_argument("--height", type=int, help="scale frames to this height (default: the clip's)")
    ap.add_argument("--batch-size", type=int, default=4, help="vaeencode batch-size (default 4)")
    ap.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "remote"],
                    help="vaeencode backend (default auto)")
    ap.add_argument("--threads", type=int, help="vaeencode threads (default: the element's)")
    ap.add_argument("--extensions", default="mp4,mkv,webm,avi,mov,m4v,ogv,ogg,mpg,mpeg,ts,flv,gif",
                    help="comma-separated video file extensions (default: %(default)s)")
    ap.add_argument("--fps", default="24/1",
                    help="frame rate of image-sequence folders, N/D (default 24/1)")
    ap.add_argument("--verbose", "-v", action="store_true", help="a line per finished clip")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.batch_size < 1:
        ap.error("--batch-size must be at least 1")
    for opt in ("width", "height"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            ap.error(f"--{opt} must be positive")
    if not re.fullmatch(r"\d+/\d+", args.fps):
        ap.error("--fps must be N/D, e.g. 24/1")
    if not os.path.isdir(args.input):
        ap.error(f"--input {args.input}: not a folder")
    if not os.path.exists(args.model):
        ap.error(f"--model {args.model}: no such file or folder")
    args.model = os.path.abspath(args.model)
    args.extensions = {e.strip().lower().lstrip(".") for e in args.extensions.split(",") if e.strip()}
    return args


def main(argv):
    args = parse_args(argv)
    Gst.init(None)
    for name in ("vaeencode", "safetensorsmux"):
        if Gst.ElementFactory.find(name) is None:
            log(f"no GStreamer element '{name}': set GST_PLUGIN_PATH to the plugin's build folder "
                "(e.g. build/gst/vae) or install it (meson install)")
            return 2
    os.makedirs(args.output, exist_ok=True)
    clips = find_clips(args.input, args.extensions, args.output)
    if not clips:
        log(f"no clips in {args.input} (extensions: {','.join(sorted(args.extensions))},"
            f" or folders of numbered images)")
        return 1
    manifest = load_manifest(args.output)
    todo = []
    for c in clips:
        e = manifest.get(c.rel)
        if e is not None and e.get("latents") == c.out_rel:
            continue
        todo.append(c)
    skipped = len(clips) - len(todo)
    log(f"{len(clips)} clips in {args.input}: {skipped} already done, {len(todo)} to encode "
        f"with {args.jobs} pipeline(s)")
    builder = Builder(args, todo)
    builder.progress.total = len(clips)
    builder.progress.skipped = skipped
    if todo:
        builder.run()
    else:
        builder.progress.draw(final=True)
    if builder.interrupted:
        return 130
    if builder.failures:
        log(f"{len(builder.failures)} of {len(todo)} clip(s) failed:")
        for rel, why in builder.failures:
            print(f"  {rel}: {why}", file=sys.stderr)
        return 1
    log(f"all {len(clips)} clips done; manifest: {os.path.join(args.output, MANIFEST)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
