#!/usr/bin/python3
"""Live capture through the VAE: a camera (or a test pattern) is encoded to
latents as it plays; the latents go to a safetensors file and, decoded again,
to a window, so you see what the latents hold.

    examples/live_capture.py --model MODEL [--device /dev/video0] [--seconds 10]
    examples/live_capture.py --model MODEL --test --seconds 5 --no-display

The pipeline:

    v4l2src device=D            (or: videotestsrc is-live=true with --test)
      ! videoconvert ! videoscale ! videorate ! video/x-raw,width=W,height=H,framerate=F
      ! vaeencode model=M batch-size=4 batch-timeout=100
      ! tee name=t
    t. ! queue ! safetensorsmux ! filesink location=OUT
    t. ! queue leaky=downstream max-size-buffers=8
       ! vaedecode model=M ! videoconvert ! autovideosink   (fakesink with --no-display)

batch-timeout makes vaeencode flush a partial batch when frames come slower
than the batch fills, so a live source never waits on a full batch.  Ctrl-C
(or --seconds) sends EOS; the script waits for it to reach the sinks, so the
latent file is complete (safetensorsmux writes it at EOS).  A second Ctrl-C
aborts without waiting.

Needs Debian's python3-gst-1.0; run with /usr/bin/python3 and
GST_PLUGIN_PATH=build/gst/vae unless the plugin is installed.
"""

import argparse
import os
import re
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def log(msg):
    print(f"live_capture: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Live capture to latents through vaeencode, "
                                             "with a decoded preview.")
    ap.add_argument("--model", required=True, help="model path (vaeencode/vaedecode model property)")
    ap.add_argument("--output", default="capture.safetensors", help="latent file (default %(default)s)")
    ap.add_argument("--test", action="store_true", help="videotestsrc is-live=true instead of a camera")
    ap.add_argument("--device", default="/dev/video0", help="V4L2 device (default %(default)s)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", default="15/1", help="frame rate N/D (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=0,
                    help="stop after this many seconds (default: run until Ctrl-C)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batch-timeout", type=int, default=100, help="ms (default %(default)s)")
    ap.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "remote"])
    ap.add_argument("--no-display", action="store_true",
                    help="decode into a fakesink instead of a window")
    ap.add_argument("--no-preview", action="store_true",
                    help="no decode branch at all (encode and save only)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"\d+/\d+", args.fps):
        ap.error("--fps must be N/D")
    if not os.path.exists(args.model):
        ap.error(f"--model {args.model}: no such file or folder")
    return args


def main(argv):
    args = parse_args(argv)
    Gst.init(None)
    for name in ("vaeencode", "vaedecode", "safetensorsmux"):
        if Gst.ElementFactory.find(name) is None:
            log(f"no GStreamer element '{name}': set GST_PLUGIN_PATH=build/gst/vae "
                "or install the plugin (meson install)")
            return 2

    if args.test:
        src = "videotestsrc is-live=true pattern=ball"
    else:
        if not os.path.exists(args.device):
            log(f"no camera at {args.device} (use --device, or --test for a test pattern)")
            return 2
        src = "v4l2src name=src"
    display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if args.no_display or not display:
        if not args.no_display and not args.no_preview:
            log("no DISPLAY or WAYLAND_DISPLAY: decoding into a fakesink")
        sink = "fakesink name=preview sync=false"
    else:
        sink = "autovideosink name=preview sync=false"

    tmp = args.output + ".tmp"
    desc = (f"{src} ! videoconvert ! videoscale ! videorate "
            f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps} "
            f"! vaeencode name=enc batch-size={args.batch_size} batch-timeout={args.batch_timeout} "
            f"! tee name=t "
            f"t. ! queue ! safetensorsmux ! filesink name=file ")
    if not args.no_preview:
        desc += (f"t. ! queue leaky=downstream max-size-buffers=8 max-size-bytes=0 max-size-time=0 "
                 f"! vaedecode name=dec ! videoconvert ! {sink}")
    pipeline = Gst.parse_launch(desc)
    enc = pipeline.get_by_name("enc")
    enc.set_property("model", args.model)
    Gst.util_set_object_arg(enc, "backend", args.backend)
    if not args.no_preview:
        dec = pipeline.get_by_name("dec")
        dec.set_property("model", args.model)
        Gst.util_set_object_arg(dec, "backend", args.backend)
    if not args.test:
        pipeline.get_by_name("src").set_property("device", args.device)
    pipeline.get_by_name("file").set_property("location", tmp)

    frames = [0]
    lock = threading.Lock()

    def count(pad, info):
        with lock:
            frames[0] += 1
        return Gst.PadProbeReturn.OK

    enc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, count)

    loop = GLib.MainLoop()
    state = {"eos_sent": False, "error": None, "eos": False}
    started = time.monotonic()

    def send_eos(reason):
        if state["eos_sent"]:
            log("second interrupt: aborting; the latent file is not complete")
            loop.quit()
            return
        state["eos_sent"] = True
        if tty:
            print("", file=sys.stderr)
        log(f"{reason}: sending EOS, waiting for the latent file to be written")
        pipeline.send_event(Gst.Event.new_eos())

    def on_message(bus, msg):
        if msg.type == Gst.MessageType.EOS:
            state["eos"] = True
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            state["error"] = f"{msg.src.get_name() if msg.src else '?'}: {err.message}"
            if debug:
                state["error"] += f"\n  {debug}"
            loop.quit()
        elif msg.type == Gst.MessageType.WARNING:
            err, _ = msg.parse_warning()
            log(f"warning from {msg.src.get_name() if msg.src else '?'}: {err.message}")
        return True

    bus = pipeline.get_bus()
    bus.add_watch(GLib.PRIORITY_DEFAULT, on_message)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, lambda: send_eos("Ctrl-C") or True)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, lambda: send_eos("SIGTERM") or True)
    if args.seconds > 0:
        GLib.timeout_add(int(args.seconds * 1000), lambda: send_eos(f"{args.seconds:g} s") or False)

    def report():
        with lock:
            n = frames[0]
        if not state["eos_sent"]:
            text = f"{n} frames encoded, {time.monotonic() - started:.0f} s (Ctrl-C to stop)"
            if tty:
                print(f"\r\x1b[Klive_capture: {text}", end="", file=sys.stderr, flush=True)
            else:
                log(text)
        return True

    tty = sys.stderr.isatty()
    GLib.timeout_add(1000 if tty else 5000, report)
    if os.path.exists(tmp):
        os.unlink(tmp)
    log("capturing: " + desc)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        # the error message on the bus says why
        pass
    loop.run()
    pipeline.set_state(Gst.State.NULL)

    if state["error"]:
        log(f"error: {state['error']}")
        if os.path.exists(tmp):
            os.unlink(tmp)
        return 1
    if not state["eos"]:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return 130
    if not os.path.isfile(tmp):
        log(f"EOS reached but {tmp} was not written")
        return 1
    os.replace(tmp, args.output)
    log(f"wrote {args.output}: {frames[0]} frames of latents "
        f"({os.path.getsize(args.output)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
