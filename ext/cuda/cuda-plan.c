/* placeholder: being written */
typedef int vae_cuda_placeholder_cuda_plan_c;
