#include "kernels/backend.h"

#include "core/check.h"

const backend *backend_for(device dev) {
    switch (dev) {
    case DEV_CPU: return &cpu_backend;
    default: DIE("no backend for device %d", (int)dev);
    }
}
