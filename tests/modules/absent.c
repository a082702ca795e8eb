/* A library that the test's engine module needs and that the test leaves
 * out of the module's folder: a stand-in for libcudnn.so.9 on a machine
 * without the CUDA runtime. */
int vae_test_absent (void);

int
vae_test_absent (void)
{
  return 42;
}
