/* The CPU path's fused kernels: what the GPU path does with one CuPy kernel each (functions.py's
 * _GPU_COL2IM, _GPU_MAX_POOL, _GPU_MAX_POOL_GRAD), for NumPy arrays, one pass where NumPy takes
 * several over the largest tensors of a small CNN.
 *
 * Built by setup.py as trainer._cpukernels (optional: without a C compiler the engine runs the
 * same operations as NumPy ufuncs, with the same results bit for bit - the kernels add and compare
 * in the same order, without fused multiply-adds). Every function releases the GIL while it works.
 *
 *   col2im(dcols, gx, N, H, W, C, KH, KW, SH, SW, RG, CG, ROWS, COLS)
 *       gx (N, H, W, C) = the sum over kernel offsets of the columns' gradient dcols, whose rows
 *       are the output positions in Conv2D._grid's order and whose columns are (KH, KW, C)
 *   max_pool(z, strides, N, PR, PC, F, y, right_top, right_bottom, lower)
 *       y (N, PR, PC, F) = the maximum of each window's four cells of z, and the comparisons that
 *       give the backward pass its cell: cell (a, b) of output (s, r, c, f) is
 *       z[a*SA + b*SB + s*S0 + r*S1 + c*S2 + f], strides = (SA, SB, S0, S1, S2) in elements
 *   max_pool_grad(g, right_top, right_bottom, lower, gz, strides, N, PR, PC, F)
 *       each window's gradient g to the cell the maximum came from, zeros to the others, in gz
 *       laid out as z above
 *
 *   adam(w, g, m, v, alpha, beta_1, beta_2, epsilon)
 *       one Adam step over a flat parameter buffer, in place: m and v updated, w -= alpha * m /
 *       (sqrt(v) + epsilon); g is left as g * g * (1 - beta_2), as the NumPy path leaves it
 *
 * Arrays are float32 or float64 (all of one call alike), C-contiguous; masks are NumPy bools.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef enum { F32 = 4, F64 = 8 } Width;

/* The buffers of one call, released together. */
typedef struct {
    Py_buffer views[8];
    int count;
} Held;

static void release_all(Held *held) {
    for (int i = 0; i < held->count; i++) PyBuffer_Release(&held->views[i]);
    held->count = 0;
}

/* Gets obj's buffer (writable or not) of at least `need` bytes into held. */
static void *hold(Held *held, PyObject *obj, int writable, Py_ssize_t need, const char *what) {
    Py_buffer *view = &held->views[held->count];
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    held->count++;
    if (view->len < need) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, fewer than the %zd it needs", what, view->len, need);
        return NULL;
    }
    return view->buf;
}

/* 4 for a float32 array, 8 for float64; -1 with TypeError for anything else. */
static int width_of(PyObject *array) {
    PyObject *dtype = PyObject_GetAttrString(array, "dtype");
    PyObject *code = dtype ? PyObject_GetAttrString(dtype, "char") : NULL;
    Py_XDECREF(dtype);
    const char *text = code ? PyUnicode_AsUTF8(code) : NULL;
    int width = text && !strcmp(text, "f") ? 4 : text && !strcmp(text, "d") ? 8 : -1;
    Py_XDECREF(code);
    if (width < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "the kernels take float32 or float64 arrays");
    }
    return width;
}

/* The common width of two arrays, or -1 with a TypeError naming the kernel. */
static int common_width(const char *who, PyObject *a, PyObject *b) {
    int width = width_of(a);
    if (width < 0) return -1;
    if (width_of(b) != width) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s: the arrays differ in dtype", who);
        return -1;
    }
    return width;
}

/* The pool's three masks (right_top, right_bottom, lower), `outputs` bytes each; 0, or -1 with the error. */
static int hold_masks(Held *held, PyObject *const *objects, int writable, Py_ssize_t outputs, uint8_t **masks) {
    static const char *names[3] = {"right_top", "right_bottom", "lower"};
    for (int k = 0; k < 3; k++) {
        if (!(masks[k] = hold(held, objects[k], writable, outputs, names[k]))) return -1;
    }
    return 0;
}

/* 0 when no size is negative, else -1 with a ValueError naming the kernel. */
static int sizes_ok(const char *who, Py_ssize_t N, Py_ssize_t PR, Py_ssize_t PC, Py_ssize_t F) {
    if (N < 0 || PR < 0 || PC < 0 || F < 0) {
        PyErr_Format(PyExc_ValueError, "%s: negative sizes", who);
        return -1;
    }
    return 0;
}

/* Loops whose arithmetic is more than memory traffic (square roots, divisions) get a copy for each
 * vector width the machine may have, chosen when the module loads; the build stays portable. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* ------------------------------------------------------------------------------ col2im */

#define COL2IM(T)                                                                                                    \
    CLONES static void col2im_##T(const T *dcols, T *gx, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,           \
                           Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t RG, Py_ssize_t CG, \
                           Py_ssize_t ROWS, Py_ssize_t COLS) {                                                       \
        if (SH == 1 && SW == 1 && RG == 1 && CG == 1) { /* the offsets that reach a cell, without a division */   \
            for (Py_ssize_t s = 0; s < N; s++)                                                                       \
                for (Py_ssize_t h = 0; h < H; h++) {                                                                 \
                    const Py_ssize_t ki0 = h - ROWS + 1 > 0 ? h - ROWS + 1 : 0, ki1 = h < KH - 1 ? h : KH - 1;      \
                    for (Py_ssize_t w = 0; w < W; w++) {                                                             \
                        T *restrict out = gx + ((s * H + h) * W + w) * C;                                            \
                        const Py_ssize_t kj0 = w - COLS + 1 > 0 ? w - COLS + 1 : 0, kj1 = w < KW - 1 ? w : KW - 1;  \
                        for (Py_ssize_t c = 0; c < C; c++) out[c] = 0;                                               \
                        for (Py_ssize_t ki = ki0; ki <= ki1; ki++)                                                   \
                            for (Py_ssize_t kj = kj0; kj <= kj1; kj++) {                                             \
                                const Py_ssize_t pos = (s * ROWS + h - ki) * COLS + w - kj;                          \
                                const T *restrict src = dcols + ((pos * KH + ki) * KW + kj) * C;                     \
                                for (Py_ssize_t c = 0; c < C; c++) out[c] += src[c];                                 \
                            }                                                                                        \
                    }                                                                                                \
                }                                                                                                    \
            return;                                                                                                  \
        }                                                                                                            \
        for (Py_ssize_t s = 0; s < N; s++)                                                                           \
            for (Py_ssize_t h = 0; h < H; h++)                                                                       \
                for (Py_ssize_t w = 0; w < W; w++) {                                                                 \
                    T *restrict out = gx + ((s * H + h) * W + w) * C;                                                \
                    for (Py_ssize_t c = 0; c < C; c++) out[c] = 0;                                                   \
                    for (Py_ssize_t ki = 0; ki < KH; ki++) {                                                         \
                        const Py_ssize_t top = h - ki;                                                               \
                        if (top < 0 || top % SH || top / SH >= RG * ROWS) continue;                                  \
                        const Py_ssize_t oh = top / SH;                                                              \
                        for (Py_ssize_t kj = 0; kj < KW; kj++) {                                                     \
                            const Py_ssize_t left = w - kj;                                                          \
                            if (left < 0 || left % SW || left / SW >= CG * COLS) continue;                           \
                            const Py_ssize_t ow = left / SW;                                                         \
                            const Py_ssize_t pos = (((oh % RG) * CG + ow % CG) * N + s) * ROWS * COLS +              \
                                                   (oh / RG) * COLS + ow / CG;                                       \
                            const T *restrict src = dcols + ((pos * KH + ki) * KW + kj) * C;                         \
                            for (Py_ssize_t c = 0; c < C; c++) out[c] += src[c];                                     \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
    }

COL2IM(float)
COL2IM(double)

static PyObject *k_col2im(PyObject *self, PyObject *args) {
    PyObject *dcols_obj, *gx_obj;
    Py_ssize_t N, H, W, C, KH, KW, SH, SW, RG, CG, ROWS, COLS;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnnnn", &dcols_obj, &gx_obj, &N, &H, &W, &C, &KH, &KW, &SH, &SW, &RG, &CG,
                          &ROWS, &COLS))
        return NULL;
    if (N < 0 || H < 0 || W < 0 || C < 0 || KH < 1 || KW < 1 || SH < 1 || SW < 1 || RG < 1 || CG < 1 || ROWS < 0 ||
        COLS < 0) {
        PyErr_SetString(PyExc_ValueError, "col2im: negative sizes, or kernel, strides or groups below 1");
        return NULL;
    }
    int width = common_width("col2im", dcols_obj, gx_obj);
    if (width < 0) return NULL;
    Held held = {0};
    const Py_ssize_t positions = RG * CG * N * ROWS * COLS;
    const void *dcols = hold(&held, dcols_obj, 0, positions * KH * KW * C * width, "dcols");
    void *gx = dcols ? hold(&held, gx_obj, 1, N * H * W * C * width, "gx") : NULL;
    if (!gx) {
        release_all(&held);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS if (width == F32) col2im_float(dcols, gx, N, H, W, C, KH, KW, SH, SW, RG, CG, ROWS, COLS);
    else col2im_double(dcols, gx, N, H, W, C, KH, KW, SH, SW, RG, CG, ROWS, COLS);
    Py_END_ALLOW_THREADS release_all(&held);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------ 2x2 max-pool */

/* As Conv2DMaxPool's NumPy path: the maximum of each row's two cells, then of the two rows; a
 * later cell takes the window when strictly larger (ties go to the first, in row-major order), and
 * NaN wins, as in np.maximum. One window's F values: scalar, or four float32 at a time with SSE2
 * (the scalar loop's selections compile to branches, which random data mispredicts). */
#define POOL_ONE(T)                                                                                                  \
    static inline void pool_one_##T(T a, T b, T c, T d, T *y, uint8_t *rt, uint8_t *rb, uint8_t *low) {              \
        const int right_top = b > a, right_bottom = d > c;                                                           \
        const T top = right_top || b != b ? b : a, bottom = right_bottom || d != d ? d : c;                          \
        const int lower = bottom > top;                                                                              \
        *y = lower || bottom != bottom ? bottom : top;                                                               \
        *rt = (uint8_t)right_top;                                                                                    \
        *rb = (uint8_t)right_bottom;                                                                                 \
        *low = (uint8_t)lower;                                                                                       \
    }

POOL_ONE(float)
POOL_ONE(double)

#if defined(__SSE2__)
static inline __m128 select4(__m128 mask, __m128 yes, __m128 no) {
    return _mm_or_ps(_mm_and_ps(mask, yes), _mm_andnot_ps(mask, no));
}

static inline void store_flags4(uint8_t *out, __m128 mask) { /* all-ones lanes -> 1 bytes */
    __m128i ones = _mm_and_si128(_mm_castps_si128(mask), _mm_set1_epi32(1));
    __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(ones, ones), _mm_setzero_si128());
    int32_t word = _mm_cvtsi128_si32(bytes);
    memcpy(out, &word, 4);
}
#endif

static Py_ssize_t pool_window_float(const float *restrict c00, const float *restrict c01, const float *restrict c10,
                                    const float *restrict c11, Py_ssize_t F, float *restrict y,
                                    uint8_t *restrict rt, uint8_t *restrict rb, uint8_t *restrict low) {
    Py_ssize_t f = 0;
#if defined(__SSE2__)
    for (; f + 4 <= F; f += 4) {
        const __m128 a = _mm_loadu_ps(c00 + f), b = _mm_loadu_ps(c01 + f);
        const __m128 c = _mm_loadu_ps(c10 + f), d = _mm_loadu_ps(c11 + f);
        const __m128 right_top = _mm_cmpgt_ps(b, a), right_bottom = _mm_cmpgt_ps(d, c);
        const __m128 top = select4(_mm_or_ps(right_top, _mm_cmpunord_ps(b, b)), b, a);
        const __m128 bottom = select4(_mm_or_ps(right_bottom, _mm_cmpunord_ps(d, d)), d, c);
        const __m128 lower = _mm_cmpgt_ps(bottom, top);
        _mm_storeu_ps(y + f, select4(_mm_or_ps(lower, _mm_cmpunord_ps(bottom, bottom)), bottom, top));
        store_flags4(rt + f, right_top);
        store_flags4(rb + f, right_bottom);
        store_flags4(low + f, lower);
    }
#endif
    for (; f < F; f++) pool_one_float(c00[f], c01[f], c10[f], c11[f], y + f, rt + f, rb + f, low + f);
    return F;
}

static Py_ssize_t pool_window_double(const double *restrict c00, const double *restrict c01,
                                     const double *restrict c10, const double *restrict c11, Py_ssize_t F,
                                     double *restrict y, uint8_t *restrict rt, uint8_t *restrict rb,
                                     uint8_t *restrict low) {
    for (Py_ssize_t f = 0; f < F; f++) pool_one_double(c00[f], c01[f], c10[f], c11[f], y + f, rt + f, rb + f, low + f);
    return F;
}

#define MAX_POOL(T)                                                                                                  \
    static void max_pool_##T(const T *restrict z, const Py_ssize_t *st, Py_ssize_t N, Py_ssize_t PR, Py_ssize_t PC,  \
                             Py_ssize_t F, T *restrict y, uint8_t *restrict right_top,                               \
                             uint8_t *restrict right_bottom, uint8_t *restrict lower) {                              \
        Py_ssize_t i = 0;                                                                                            \
        for (Py_ssize_t s = 0; s < N; s++)                                                                           \
            for (Py_ssize_t r = 0; r < PR; r++)                                                                      \
                for (Py_ssize_t c = 0; c < PC; c++) {                                                                \
                    const T *c00 = z + s * st[2] + r * st[3] + c * st[4];                                            \
                    i += pool_window_##T(c00, c00 + st[1], c00 + st[0], c00 + st[0] + st[1], F, y + i,               \
                                         right_top + i, right_bottom + i, lower + i);                                \
                }                                                                                                    \
    }

/* The gradient g of each window to its cells, with the NumPy path's arithmetic: bottom = g * lower,
 * top = g - bottom, then each row's right cell = its part * right and its left = part - right.
 * (The activation's gradient stays a NumPy pass before it: with it in this loop, GCC vectorises
 * none of it.) */
#define MAX_POOL_GRAD(T)                                                                                             \
    CLONES static void max_pool_grad_##T(const T *restrict g, const uint8_t *restrict right_top,                            \
                                  const uint8_t *restrict right_bottom, const uint8_t *restrict lower, T *gz,        \
                                  const Py_ssize_t *st, Py_ssize_t N, Py_ssize_t PR, Py_ssize_t PC, Py_ssize_t F) {  \
        Py_ssize_t i = 0;                                                                                            \
        for (Py_ssize_t s = 0; s < N; s++)                                                                           \
            for (Py_ssize_t r = 0; r < PR; r++)                                                                      \
                for (Py_ssize_t c = 0; c < PC; c++, i += F) {                                                        \
                    T *restrict g00 = gz + s * st[2] + r * st[3] + c * st[4];                                        \
                    T *restrict g01 = g00 + st[1], *restrict g10 = g00 + st[0], *restrict g11 = g10 + st[1];         \
                    for (Py_ssize_t f = 0; f < F; f++) {                                                             \
                        const T bottom = g[i + f] * (T)lower[i + f], top = g[i + f] - bottom;                        \
                        g01[f] = top * (T)right_top[i + f];                                                          \
                        g00[f] = top - g01[f];                                                                       \
                        g11[f] = bottom * (T)right_bottom[i + f];                                                    \
                        g10[f] = bottom - g11[f];                                                                    \
                    }                                                                                                \
                }                                                                                                    \
    }

MAX_POOL(float)
MAX_POOL(double)
MAX_POOL_GRAD(float)
MAX_POOL_GRAD(double)

/* The five cell strides, checked against the cells' extent in a buffer of `len` elements. */
static int cell_strides(PyObject *strides, Py_ssize_t *st, Py_ssize_t N, Py_ssize_t PR, Py_ssize_t PC, Py_ssize_t F,
                        Py_ssize_t len) {
    if (!PyArg_ParseTuple(strides, "nnnnn", &st[0], &st[1], &st[2], &st[3], &st[4])) return -1;
    for (int k = 0; k < 5; k++) {
        if (st[k] < 0) {
            PyErr_SetString(PyExc_ValueError, "max_pool: the cell strides must not be negative");
            return -1;
        }
    }
    if (N && PR && PC && F) {
        const Py_ssize_t last = st[0] + st[1] + (N - 1) * st[2] + (PR - 1) * st[3] + (PC - 1) * st[4] + F - 1;
        if (last >= len) {
            PyErr_SetString(PyExc_ValueError, "max_pool: the cells reach past the end of the array");
            return -1;
        }
    }
    return 0;
}

static PyObject *k_max_pool(PyObject *self, PyObject *args) {
    PyObject *z_obj, *strides, *y_obj, *mask_objs[3];
    Py_ssize_t N, PR, PC, F, st[5];
    if (!PyArg_ParseTuple(args, "OO!nnnnOOOO", &z_obj, &PyTuple_Type, &strides, &N, &PR, &PC, &F, &y_obj, &mask_objs[0],
                          &mask_objs[1], &mask_objs[2]))
        return NULL;
    int width = sizes_ok("max_pool", N, PR, PC, F) < 0 ? -1 : common_width("max_pool", z_obj, y_obj);
    if (width < 0) return NULL;
    const Py_ssize_t outputs = N * PR * PC * F;
    Held held = {0};
    const void *z = hold(&held, z_obj, 0, 0, "z");
    void *y = z ? hold(&held, y_obj, 1, outputs * width, "y") : NULL;
    uint8_t *m[3];
    if (!y || hold_masks(&held, mask_objs, 1, outputs, m) < 0 ||
        cell_strides(strides, st, N, PR, PC, F, held.views[0].len / width) < 0) {
        release_all(&held);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS if (width == F32) max_pool_float(z, st, N, PR, PC, F, y, m[0], m[1], m[2]);
    else max_pool_double(z, st, N, PR, PC, F, y, m[0], m[1], m[2]);
    Py_END_ALLOW_THREADS release_all(&held);
    Py_RETURN_NONE;
}

static PyObject *k_max_pool_grad(PyObject *self, PyObject *args) {
    PyObject *g_obj, *mask_objs[3], *gz_obj, *strides;
    Py_ssize_t N, PR, PC, F, st[5];
    if (!PyArg_ParseTuple(args, "OOOOOO!nnnn", &g_obj, &mask_objs[0], &mask_objs[1], &mask_objs[2], &gz_obj,
                          &PyTuple_Type, &strides, &N, &PR, &PC, &F))
        return NULL;
    int width = sizes_ok("max_pool_grad", N, PR, PC, F) < 0 ? -1 : common_width("max_pool_grad", g_obj, gz_obj);
    if (width < 0) return NULL;
    const Py_ssize_t outputs = N * PR * PC * F;
    Held held = {0};
    const void *g = hold(&held, g_obj, 0, outputs * width, "g");
    uint8_t *m[3];
    void *gz = g && hold_masks(&held, mask_objs, 0, outputs, m) == 0 ? hold(&held, gz_obj, 1, 0, "gz") : NULL;
    if (!gz || cell_strides(strides, st, N, PR, PC, F, held.views[4].len / width) < 0) {
        release_all(&held);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS if (width == F32) max_pool_grad_float(g, m[0], m[1], m[2], gz, st, N, PR, PC, F);
    else max_pool_grad_double(g, m[0], m[1], m[2], gz, st, N, PR, PC, F);
    Py_END_ALLOW_THREADS release_all(&held);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------ Adam */

/* Optimizer.update's NumPy path, operation for operation, in one pass: the scalars in T as NumPy
 * casts Python floats next to an array of T. */
#define ADAM(T)                                                                                                      \
    CLONES static void adam_##T(T *restrict w, T *restrict g, T *restrict m, T *restrict v, Py_ssize_t n, double alpha,    \
                         double b1, double b2, double eps) {                                                         \
        const T a = (T)alpha, keep1 = (T)b1, take1 = (T)(1.0 - b1), keep2 = (T)b2, take2 = (T)(1.0 - b2);           \
        const T e = (T)eps;                                                                                          \
        for (Py_ssize_t i = 0; i < n; i++) {                                                                         \
            m[i] = m[i] * keep1 + g[i] * take1;                                                                      \
            g[i] = g[i] * g[i] * take2;                                                                              \
            v[i] = v[i] * keep2 + g[i];                                                                              \
            w[i] -= m[i] / (SQRT_##T(v[i]) + e) * a;                                                                 \
        }                                                                                                            \
    }

#define SQRT_float sqrtf
#define SQRT_double sqrt
ADAM(float)
ADAM(double)

static PyObject *k_adam(PyObject *self, PyObject *args) {
    PyObject *objects[4];
    double alpha, b1, b2, eps;
    if (!PyArg_ParseTuple(args, "OOOOdddd", &objects[0], &objects[1], &objects[2], &objects[3], &alpha, &b1, &b2,
                          &eps))
        return NULL;
    int width = width_of(objects[0]);
    if (width < 0) return NULL;
    Held held = {0};
    void *buffers[4];
    static const char *names[4] = {"w", "g", "m", "v"};
    Py_ssize_t n = 0;
    for (int k = 0; k < 4; k++) {
        if (common_width("adam", objects[0], objects[k]) < 0) {
            release_all(&held);
            return NULL;
        }
        if (!(buffers[k] = hold(&held, objects[k], 1, k ? n * width : 0, names[k]))) {
            release_all(&held);
            return NULL;
        }
        if (!k) n = held.views[0].len / width;
    }
    Py_BEGIN_ALLOW_THREADS if (width == F32) adam_float(buffers[0], buffers[1], buffers[2], buffers[3], n, alpha, b1,
                                                       b2, eps);
    else adam_double(buffers[0], buffers[1], buffers[2], buffers[3], n, alpha, b1, b2, eps);
    Py_END_ALLOW_THREADS release_all(&held);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"col2im", k_col2im, METH_VARARGS, "The input gradient of a convolution from its columns' gradient."},
    {"adam", k_adam, METH_VARARGS, "One Adam step over flat buffers, in place."},
    {"max_pool", k_max_pool, METH_VARARGS, "A 2x2 max-pool of the GEMM's output, with its comparisons."},
    {"max_pool_grad", k_max_pool_grad, METH_VARARGS, "A 2x2 max-pool's gradient, spread to the cells."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpukernels", "Cupola's CPU kernels.", -1, methods};

PyMODINIT_FUNC PyInit__cpukernels(void) { return PyModule_Create(&module); }
