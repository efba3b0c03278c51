#include "kernels/backend.h"

#include "core/check.h"

const backend *backend_for(device dev) {
    switch (dev) {
    case DEV_CPU: return &cpu_backend;
#ifdef SDFT_HAVE_CUDA
    case DEV_CUDA: return &cuda_backend;
#endif
#ifdef SDFT_HAVE_EMU
    case DEV_CUDA_EMU: return &emu_backend;
#endif
    default: DIE("no %s backend in this build", device_name(dev));
    }
}

bool backend_available(device dev) {
    switch (dev) {
    case DEV_CPU: return true;
#ifdef SDFT_HAVE_CUDA
    case DEV_CUDA: return cuda_device_count() > 0;
#endif
#ifdef SDFT_HAVE_EMU
    case DEV_CUDA_EMU: return true;
#endif
    default: return false;
    }
}
