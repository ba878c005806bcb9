"""Choose the array module (NumPy or CuPy) once and move arrays between host and device.

This is the only module in `trainer` that imports CuPy, and the one that hands out the fused
kernels of either path (CuPy ElementwiseKernels, the compiled CPU kernels). Everything else writes
``xp = backend.get_array_module(x)`` and stays generic.
"""
import math
import os
import resource
import sys

import numpy as np

try:
    from trainer import _cpukernels
except ImportError:  # built without a C compiler: the CPU path runs NumPy ufuncs alone
    _cpukernels = None

_cupy = None          # the cupy module once imported, False when unavailable
_device = "cpu"       # "cpu" or "gpu"


class DeviceError(RuntimeError):
    """A GPU was asked for but none can be used."""


def _import_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:  # noqa: BLE001 - ImportError, CUDARuntimeError (no driver / no device), ...
            _cupy = False
    return _cupy or None


def gpu_available():
    """True when CuPy is installed and a CUDA device is visible."""
    return _import_cupy() is not None


def set_device(device):
    """Select "cpu" or "gpu" (also "cuda", "cuda:N") for arrays created from now on."""
    global _device
    name = str(device).lower()
    if name == "cpu":
        _device = "cpu"
        return _device
    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        cupy = _import_cupy()
        if cupy is None:
            raise DeviceError(
                "A GPU was requested but CuPy or a CUDA device is not available. "
                "Install CuPy for your CUDA version (e.g. `pip install cupy-cuda12x`) "
                "or use set_device('cpu')."
            )
        if ":" in name:
            cupy.cuda.Device(int(name.split(":", 1)[1])).use()
        _device = "gpu"
        return _device
    raise ValueError(f"set_device: device must be 'cpu' or 'gpu'. Received: device={device!r}")


def gpu_name():
    """The current GPU's name (e.g. "NVIDIA H100 80GB HBM3"), or None without one."""
    if not _import_cupy():
        return None
    name = _cupy.cuda.runtime.getDeviceProperties(_cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def tf32_matmul():
    """True when CuPy's float32 matrix products use TF32 tensor cores: CUPY_TF32 set to a positive
    number before CuPy's first product, read the way CuPy reads it."""
    try:
        return int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        return False


def get_device():
    """The device in use: "cpu" or "gpu"."""
    return _device


def xp():
    """The array module of the current device."""
    return _cupy if _device == "gpu" else np


def get_array_module(x):
    """numpy or cupy, whichever owns ``x`` (a raw array or anything with ``.data``)."""
    if _cupy:
        data = getattr(x, "data", x) if not isinstance(x, np.ndarray) else x
        return _cupy.get_array_module(data)
    return np


def to_device(x, dtype=None):
    """Copy a host array onto the current device (no copy on CPU when already right)."""
    if _device == "gpu":
        return _cupy.asarray(x, dtype=dtype)
    if _cupy and isinstance(x, _cupy.ndarray):
        x = _cupy.asnumpy(x)
    return np.asarray(x, dtype=dtype)


def is_device_array(x):
    """True for a CuPy array (an array that already lives on the GPU)."""
    return bool(_cupy) and isinstance(x, _cupy.ndarray)


def resident_limit_bytes():
    """The largest data set (in bytes, after casting) that training keeps whole on the device.

    Larger ones stay where they are (a memory map stays on disk) and are read, cast and moved
    one batch at a time. CUPOLA_RESIDENT_BYTES overrides the default: a quarter of the
    physical memory on the CPU, half the free GPU memory on the GPU."""
    value = os.environ.get("CUPOLA_RESIDENT_BYTES")
    if value is not None and value.strip():
        try:
            limit = int(float(value))
        except ValueError:
            raise ValueError(f"CUPOLA_RESIDENT_BYTES must be a number of bytes. Received: {value!r}") from None
        if limit < 0:
            raise ValueError(f"CUPOLA_RESIDENT_BYTES must not be negative. Received: {value!r}")
        return limit
    if _device == "gpu":
        free, _total = _cupy.cuda.Device().mem_info
        return free // 2
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 8 GiB of RAM
        return 2 << 30


_kernels = {}
_fused = os.environ.get("CUPOLA_FUSED_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def fused(xp):
    """True when ``xp`` is not NumPy (CuPy) and the fused GPU kernels are on.

    CUPOLA_FUSED_KERNELS=0 (or ``set_fused_kernels(False)``) makes the GPU run the generic
    operation-by-operation path instead, and the CPU its ufuncs without ``cpu_kernels``: to
    compare the two, or to step around a kernel."""
    return xp is not np and _fused


def cpu_kernels(xp):
    """The compiled CPU kernels (trainer/_cpukernels.c) for NumPy arrays, or None: not built, not
    NumPy, or the fused kernels turned off. Their results are the ufuncs' (tests check both)."""
    return _cpukernels if xp is np and _fused else None


_graphs = os.environ.get("CUPOLA_CUDA_GRAPHS", "1").strip().lower()


def step_graphs_mode(xp):
    """How a fit replays its training steps (trainer.graphs): "cuda" on the GPU with the fused
    kernels on, unless CUPOLA_CUDA_GRAPHS=0; "emulate" on NumPy with CUPOLA_CUDA_GRAPHS=emulate
    (the tests' check of the graphed loop); None: one step at a time."""
    if _graphs in ("0", "false", "no", "off"):
        return None
    if xp is np:
        return "emulate" if _graphs == "emulate" else None
    return "cuda" if _fused else None


def set_step_graphs(value):
    """"1" (on where possible), "0" (off) or "emulate", as CUPOLA_CUDA_GRAPHS takes them."""
    global _graphs
    _graphs = str(value).strip().lower()


def set_fused_kernels(on):
    global _fused
    _fused = bool(on)


def fused_kernels_enabled():
    return _fused


def elementwise_kernel(name, in_params, out_params, operation):
    """A CuPy ElementwiseKernel, made once per process (CuPy caches its compiled code on disk).

    Fused kernels are the GPU's answer to launch-bound small models: one launch where the generic
    path issues one per operation. Callers use them only on device arrays; NumPy keeps its ufuncs.
    """
    key = (name, in_params, out_params, operation)
    kernel = _kernels.get(key)
    if kernel is None:
        if not _import_cupy():
            raise DeviceError(f"The fused kernel {name} needs CuPy and a CUDA device.")
        kernel = _kernels[key] = _cupy.ElementwiseKernel(in_params, out_params, operation, name)
    return kernel


def copy_to_device(target, host):
    """Copy the host array ``host`` into the existing array ``target`` (of its shape), cast to its dtype."""
    if _cupy and isinstance(target, _cupy.ndarray):
        if target.flags.c_contiguous:
            target.set(np.ascontiguousarray(host, dtype=target.dtype))
        else:
            target[...] = _cupy.asarray(host, dtype=target.dtype)
    else:
        target[...] = np.asarray(host, dtype=target.dtype)


def to_host(x):
    """A NumPy array with the contents of ``x`` (host or device array, or scalar)."""
    if _cupy and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def scatter_add(target, indices, values):
    """target[indices] += values, accumulating repeated indices (np.add.at / cupyx.scatter_add)."""
    if _cupy and isinstance(target, _cupy.ndarray):
        import cupyx
        cupyx.scatter_add(target, indices, values)
    else:
        np.add.at(target, indices, values)
    return target


def random_generator(seed):
    """A random Generator on the current device, seeded with ``seed`` (an int or list of ints)."""
    if _device == "gpu":
        return _cupy.random.default_rng(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    return np.random.default_rng(seed)


class CounterRandom:
    """Uniform numbers from a hash of (seed, step, draw, element): SplitMix64's finalizer.

    The seed and the step count live in a device array, and ``next_step`` advances the count on
    the device, so a training step replayed from a CUDA graph draws new numbers at every launch
    (a host-side generator would be replayed with the numbers of the step it was captured at).
    The GPU's dropout draws from it, graphed or not, so both give the same masks; so does the
    NumPy path when graphs are emulated. Same seed, same numbers, on either device.
    """

    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)
    _STEP = np.uint64(0xD1B54A32D192ED03)
    _DRAW = 0xAEF17502108EF2D9
    _MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))

    def __init__(self, xp, seed):
        self.xp = xp
        self.state = xp.zeros(2, dtype=np.uint64)  # seed word, step count
        self.draws = 0                             # draws in this step: part of each draw's key
        self.seed(seed)

    def seed(self, seed):
        """Start again from ``seed`` (an int or list of ints), in place."""
        word = np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0]
        copy_to_device(self.state, np.array([word, 0], dtype=np.uint64))
        self.draws = 0

    def next_step(self):
        self.state[1:] += np.uint64(1)
        self.draws = 0

    def random(self, shape, dtype=np.float32):
        """Uniform numbers in [0, 1) of ``shape``: 24 random bits each."""
        xp = self.xp
        self.draws += 1
        # One-element arrays, not scalars: their products wrap around as uint64 silently.
        key = self.state[0:1] + self.state[1:2] * self._STEP + np.uint64(self.draws * self._DRAW % 2 ** 64)
        z = xp.arange(math.prod(shape), dtype=np.uint64) * self._GOLDEN + key
        z ^= z >> np.uint64(30)
        z *= self._MIX[0]
        z ^= z >> np.uint64(27)
        z *= self._MIX[1]
        z ^= z >> np.uint64(31)
        dtype = np.dtype(dtype)
        return ((z >> np.uint64(40)).astype(dtype) * dtype.type(2.0 ** -24)).reshape(shape)


def step_random(current, seed):
    """The generator a fit's dropout draws from in the epoch of ``seed``: a CounterRandom reseeded
    in place (on the GPU, and on NumPy with graphs emulated), else a NumPy Generator."""
    array_module = xp()
    if array_module is np and step_graphs_mode(np) is None:
        return np.random.default_rng(seed)
    if isinstance(current, CounterRandom) and current.xp is array_module:
        current.seed(seed)
        return current
    return CounterRandom(array_module, seed)


_thread_limiter = None
_allocator_tuned = False


def ensure_blas_threads():
    """Set BLAS threads to the usable cores once, unless set_blas_threads was called already.
    A worker running several trainings at once should call set_blas_threads(cores // concurrency)."""
    if _thread_limiter is None:
        set_blas_threads()


def tune_allocator():
    """Keep freed large arrays in the C heap instead of returning them to the OS (glibc only).

    Every training step allocates the same large temporaries (im2col columns, activations);
    by default glibc maps and unmaps them each time, and the page faults on fresh pages cost
    about a third of a small CNN's step. PyTorch avoids this with its caching allocator. The
    price is that the process keeps its peak heap. Called on the first fit;
    CUPOLA_TUNE_MALLOC=0 turns it off."""
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("CUPOLA_TUNE_MALLOC", "1") == "0":
        return False
    _allocator_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        if not libc.mallopt(m_mmap_threshold, 1 << 30):
            libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to tune
        return False
    return True


def set_blas_threads(threads=None):
    """Use ``threads`` BLAS threads (default: the CPU cores this process may use)."""
    global _thread_limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _thread_limiter = threadpool_limits(limits=int(threads), user_api="blas")
    return int(threads)


# ----------------------------------------------------------------------------- memory high-water marks


def reset_peak_rss():
    """Reset the process's RSS high-water mark where Linux allows it; True when it did."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    """The process's resident-memory high-water mark in MiB (since the last reset_peak_rss, on Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def reset_memory_peaks():
    """Start counting a job's memory: the RSS high-water mark reset, and CuPy's pool emptied of cached
    blocks (the pool keeps what it allocated, so what it holds after the job is the job's peak).
    True when the RSS mark could be reset."""
    if _device == "gpu" and _cupy:
        _cupy.get_default_memory_pool().free_all_blocks()
    return reset_peak_rss()


def memory_peaks():
    """{"peak_rss_mb", "gpu_pool_mb" (None on the CPU)}: what the job since reset_memory_peaks used."""
    gpu = None
    if _device == "gpu" and _cupy:
        gpu = _cupy.get_default_memory_pool().total_bytes() / 2 ** 20
    return {"peak_rss_mb": peak_rss_mb(), "gpu_pool_mb": gpu}
