// neuralnp's CUDA kernels: the hot-path operations of ops.py (class Ops), one pass each.
//
// Every kernel computes the formula of the Ops method of the same name (its docstring is the
// specification; tests/cuda_twins.py holds a NumPy twin of each kernel, tested against Ops).
// cupy_ops.py compiles this file once with NVRTC and instantiates each template for float and
// double. Conventions that the rest of the project relies on:
//
// * No #include: NVRTC has no system headers, and the math functions (exp, log1p, tanh, sqrt,
//   ...) are built in, overloaded for float and double.
// * Each kernel is declared on ONE line, `template <typename T> __global__ void name(...)`, with
//   parameter types from a short list (T*, const T*, double*, const double*, const long long*,
//   int*, int, long long, T, double, float): tests/cuda_twins.py parses these lines to check
//   every launch's arguments, so they are the one place where lines pass 100 characters.
// * Arrays are C-contiguous; image arrays are channels-last (N, H, W, C).
// * Grid-stride loops: any launch size covers any array, and one thread may do several items.
// * Deterministic: a value that sums several inputs is summed by one thread in a fixed order
//   (col2im and the pooling gradients gather rather than scatter), never with floating-point
//   atomics. The only atomic is the integer count of non-finite weights.
// * Compiled with --fmad=false: a*b + c rounds twice, as NumPy does, instead of being fused
//   into one FMA, so that an update is the same number on the GPU as in the reference.
// * NaN goes through as in NumPy: comparisons are written so that a NaN input is kept
//   (`x <= 0 ? 0 : x` keeps it where `x > 0 ? x : 0` would drop it).

// -- helpers --------------------------------------------------------------------------------

// This thread's first item and the distance to its next one in a grid-stride loop.
__device__ __forceinline__ long long first_item()
{
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long grid_stride()
{
    return (long long)gridDim.x * blockDim.x;
}

// max(x, 0), with a NaN kept as NaN (NumPy's maximum propagates it).
template <typename T> __device__ __forceinline__ T relu(T x)
{
    return x <= T(0) ? T(0) : x;
}

// σ(x) = 1 / (1 + e^-x): e^-x overflows to inf for very negative x, and 1/inf = 0 is right.
template <typename T> __device__ __forceinline__ T sigmoid(T x)
{
    return T(1) / (T(1) + exp(-x));
}

// Whether x is NaN or ±inf: x - x is 0 for every finite x and NaN otherwise.
template <typename T> __device__ __forceinline__ int not_finite(T x)
{
    return !(x - x == T(0));
}

// The larger of a and b where a NaN in either wins (NumPy's maximum and max).
template <typename T> __device__ __forceinline__ T nan_max(T a, T b)
{
    return (b > a || b != b) ? b : a;
}

// max_j z[j] (NaN if any is), then log Σ_j e^(z[j] - max): the two numbers of log_softmax,
// log p[j] = z[j] - max - log Σ.
template <typename T> __device__ void log_sum_exp(const T* z, long long cols, T* top, T* log_s)
{
    T m = z[0];
    for (long long j = 1; j < cols; ++j) m = nan_max(m, z[j]);
    T s = T(0);
    for (long long j = 0; j < cols; ++j) s += exp(z[j] - m);
    *top = m;
    *log_s = log(s);
}

// -- activations ----------------------------------------------------------------------------

// z[i, j] ← f(z[i, j] + b[j]) in place for a (rows, cols) z; f by act: 0 linear x, 1 relu
// max(x, 0), 2 sigmoid 1 / (1 + e^-x), 3 tanh x. b is read only when has_bias.
template <typename T> __global__ void bias_act(T* z, const T* b, int has_bias, int act, long long rows, long long cols)
{
    const long long n = rows * cols;
    for (long long i = first_item(); i < n; i += grid_stride()) {
        T x = has_bias ? z[i] + b[i % cols] : z[i];
        if (act == 1) x = relu(x);
        else if (act == 2) x = sigmoid(x);
        else if (act == 3) x = tanh(x);
        z[i] = x;
    }
}

// out ← g · f'(z), written from y = f(z): [y > 0] (relu), y(1 - y) (sigmoid), 1 - y² (tanh),
// 1 (linear: out ← g). relu's is a product, not a choice, so that a NaN in g stays NaN
// where the unit is off. The bias gradient (column sums) is a CuPy reduction on the Python side.
template <typename T> __global__ void act_grad(const T* g, const T* y, T* out, int act, long long n)
{
    for (long long i = first_item(); i < n; i += grid_stride()) {
        const T yi = y[i];
        T d;
        if (act == 1) d = g[i] * (yi > T(0) ? T(1) : T(0));
        else if (act == 2) d = (T(1) - yi) * yi * g[i];
        else if (act == 3) d = (T(1) - yi * yi) * g[i];
        else d = g[i];
        out[i] = d;
    }
}

// -- losses from logits: one thread per row, the row's loss into row_loss (float64) ----------
//
// The Python side adds row_loss up (a deterministic CuPy reduction, in float64) and divides as
// Ops does. Each row is read from z and written to probs and grad by the same thread.

// Rows of logits z (rows, cols) against integer labels: p = softmax(z) = e^(log p) with
// log p[j] = z[j] - max z - log Σ e^(z - max z), probs ← p, grad ← (p - onehot(label)) / N,
// row_loss[i] ← -log p[label] (NaN for a label outside 0..cols-1, so the gate closes on it).
template <typename T> __global__ void softmax_xent(const T* z, const long long* labels, T* probs, T* grad, double* row_loss, long long rows, long long cols)
{
    const T inv_n = T(1.0 / double(rows));  // rounded once to T, as NumPy rounds 1.0 / n
    for (long long i = first_item(); i < rows; i += grid_stride()) {
        const T* zi = z + i * cols;
        T* pi = probs + i * cols;
        T* gi = grad + i * cols;
        T top, log_s;
        log_sum_exp(zi, cols, &top, &log_s);
        const long long label = labels[i];
        // no <cmath> NAN here: a quiet NaN from its bits
        double loss = __longlong_as_double(0x7ff8000000000000LL);
        for (long long j = 0; j < cols; ++j) {
            const T log_p = zi[j] - top - log_s;
            const T p = exp(log_p);
            T d = p * inv_n;
            if (j == label) {
                d -= inv_n;
                loss = -double(log_p);
            }
            pi[j] = p;
            gi[j] = d;
        }
        row_loss[i] = loss;
    }
}

// As softmax_xent with target rows y (rows, cols), one-hot or soft:
// row_loss[i] ← -Σ_j y[j] log p[j] and grad ← (p · Σ_k y[k] - y) / N.
template <typename T> __global__ void softmax_xent_dense(const T* z, const T* y, T* probs, T* grad, double* row_loss, long long rows, long long cols)
{
    const T inv_n = T(1.0 / double(rows));
    for (long long i = first_item(); i < rows; i += grid_stride()) {
        const T* zi = z + i * cols;
        const T* yi = y + i * cols;
        T* pi = probs + i * cols;
        T* gi = grad + i * cols;
        T top, log_s;
        log_sum_exp(zi, cols, &top, &log_s);
        T y_sum = T(0);
        for (long long j = 0; j < cols; ++j) y_sum += yi[j];
        double loss = 0.0;
        for (long long j = 0; j < cols; ++j) {
            const T log_p = zi[j] - top - log_s;
            const T p = exp(log_p);
            // y·log p rounded to T as the reference's product is, then added in double
            loss -= double(yi[j] * log_p);
            pi[j] = p;
            gi[j] = (p * y_sum - yi[j]) * inv_n;
        }
        row_loss[i] = loss;
    }
}

// Binary cross-entropy of logits z (rows, cols) against targets y in [0, 1], every entry its
// own problem: probs ← σ(z), grad ← (σ(z) - y) / (N·K) and
// row_loss[i] ← Σ_j max(z, 0) - z·y + log(1 + e^-|z|) (a form in which no term overflows).
template <typename T> __global__ void sigmoid_xent(const T* z, const T* y, T* probs, T* grad, double* row_loss, long long rows, long long cols)
{
    const T scale = T(1.0 / (double(rows) * double(cols)));
    for (long long i = first_item(); i < rows; i += grid_stride()) {
        const T* zi = z + i * cols;
        const T* yi = y + i * cols;
        T* pi = probs + i * cols;
        T* gi = grad + i * cols;
        double loss = 0.0;
        for (long long j = 0; j < cols; ++j) {
            const T x = zi[j], t = yi[j];
            const T p = sigmoid(x);
            T term = log1p(exp(-fabs(x)));  // the reference's order: log1p, + max, - z·y
            term += relu(x);
            term -= x * t;
            loss += double(term);
            pi[j] = p;
            gi[j] = (p - t) * scale;
        }
        row_loss[i] = loss;
    }
}

// -- optimizers over the flat buffer ---------------------------------------------------------
//
// Both save the old weights in previous when keep is set, and add the number of new weights
// that are NaN or ±inf to bad[0] (zeroed by the caller): an exact count, where a sum of
// squares would also overflow for finite weights near 1e19 in float32. Each thread counts its
// own items and adds once, and only when it found one, so a finite update costs no atomics.

// p ← p - lr·g, lr = lr[0] (a 1-element array, so a captured step can replay with new rates).
template <typename T> __global__ void sgd(T* p, const T* g, const T* lr, T* previous, int keep, int* bad, long long n)
{
    const T rate = lr[0];
    int count = 0;
    for (long long i = first_item(); i < n; i += grid_stride()) {
        T pi = p[i];
        if (keep) previous[i] = pi;
        pi -= g[i] * rate;
        p[i] = pi;
        count += not_finite(pi);
    }
    if (count) atomicAdd(bad, count);
}

// Adam, one pass, operation for operation as Ops.adam_moments and Ops.adam:
// m ← β₁m + (1-β₁)g, v ← β₂v + (1-β₂)g², with use_vmax (AMSGrad) vmax ← max(vmax, v) and
// v̂ = vmax, else v̂ = v; then p ← p - s · m / (√v̂ / c + ε), s = step_size[0] = η / (1 - β₁ᵗ),
// c = bc2_sqrt[0] = √(1 - β₂ᵗ). one_minus_beta_1/2 are 1 - β computed in double and rounded
// to T by the caller, as NumPy rounds the Python number 1.0 - beta_1.
template <typename T> __global__ void adam(T* p, const T* g, T* m, T* v, T* vmax, int use_vmax, T beta_1, T beta_2, T one_minus_beta_1, T one_minus_beta_2, T eps, const T* step_size, const T* bc2_sqrt, T* previous, int keep, int* bad, long long n)
{
    const T s = step_size[0], c = bc2_sqrt[0];
    int count = 0;
    for (long long i = first_item(); i < n; i += grid_stride()) {
        const T gi = g[i];
        const T mi = m[i] * beta_1 + gi * one_minus_beta_1;
        T vi = v[i] * beta_2 + gi * gi * one_minus_beta_2;
        m[i] = mi;
        v[i] = vi;
        if (use_vmax) {
            vi = nan_max(vmax[i], vi);
            vmax[i] = vi;
        }
        T pi = p[i];
        if (keep) previous[i] = pi;
        pi -= mi / (sqrt(vi) / c + eps) * s;
        p[i] = pi;
        count += not_finite(pi);
    }
    if (count) atomicAdd(bad, count);
}

// -- images: channels-last, padded (n, hp, wp, c), windows as in layers/conv.py -------------
//
// Output pixel (i, j) reads, for kernel entry (p, q), padded pixel (i·sh + p·dh, j·sw + q·dw).
// The forward kernels run one thread per output value; the gradients one thread per padded
// pixel, which gathers every window entry that read it, in row-major (p, q) order: the order
// in which Ops adds them, and a sum without atomics.

// cols[b, i, j, p, q, ch] ← padded[b, i·sh + p·dh, j·sw + q·dw, ch], cols (n, oh, ow, kh, kw, c).
template <typename T> __global__ void im2col(const T* padded, T* cols, long long n, int hp, int wp, int c, int oh, int ow, int kh, int kw, int sh, int sw, int dh, int dw)
{
    const long long total = n * oh * ow * kh * kw * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int q = t % kw; t /= kw;
        const int p = t % kh; t /= kh;
        const int j = t % ow; t /= ow;
        const int i = t % oh;
        const long long b = t / oh;
        const int r = i * sh + p * dh, s = j * sw + q * dw;
        cols[e] = padded[((b * hp + r) * wp + s) * c + ch];
    }
}

// The adjoint of im2col: dpadded[b, r, s, ch] ← Σ dcols[b, i, j, p, q, ch] over every
// (i, j, p, q) with r = i·sh + p·dh and s = j·sw + q·dw (0 for a pixel no window read).
template <typename T> __global__ void col2im(const T* dcols, T* dpadded, long long n, int hp, int wp, int c, int oh, int ow, int kh, int kw, int sh, int sw, int dh, int dw)
{
    const long long total = n * hp * wp * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int s = t % wp; t /= wp;
        const int r = t % hp;
        const long long b = t / hp;
        T sum = T(0);
        for (int p = 0; p < kh; ++p) {
            const int rows_above = r - p * dh;  // i·sh for the window that meets r at entry p
            if (rows_above < 0 || rows_above % sh != 0 || rows_above / sh >= oh) continue;
            const int i = rows_above / sh;
            for (int q = 0; q < kw; ++q) {
                const int cols_before = s - q * dw;
                if (cols_before < 0 || cols_before % sw != 0 || cols_before / sw >= ow) continue;
                const int j = cols_before / sw;
                sum += dcols[((((b * oh + i) * ow + j) * kh + p) * kw + q) * c + ch];
            }
        }
        dpadded[e] = sum;
    }
}

// y[b, i, j, ch] ← max over the (ph, pw) window at (i·sh, j·sw), win ← p·pw + q of the first
// maximum in row-major order (a later entry wins only when strictly greater); a NaN wins.
template <typename T> __global__ void max_pool(const T* padded, T* y, int* win, long long n, int hp, int wp, int c, int oh, int ow, int sh, int sw, int ph, int pw)
{
    const long long total = n * oh * ow * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int j = t % ow; t /= ow;
        const int i = t % oh;
        const long long b = t / oh;
        const T* corner = padded + ((b * hp + i * sh) * wp + j * sw) * c + ch;
        T best = corner[0];
        int winner = 0;
        for (int k = 1; k < ph * pw; ++k) {
            const T x = corner[((long long)(k / pw) * wp + k % pw) * c];
            if (x > best || x != x) {
                best = x;
                winner = k;
            }
        }
        y[e] = best;
        win[e] = winner;
    }
}

// dpadded[b, r, s, ch] ← Σ g[b, i, j, ch] over the windows (i, j) whose winner is (r, s)
// (0 for a pixel that won nothing; no g·0, so an infinite gradient gives no NaN elsewhere).
// win is only read: `int*` as max_pool writes it, the parameter list having no `const int*`.
template <typename T> __global__ void max_pool_grad(const T* g, int* win, T* dpadded, long long n, int hp, int wp, int c, int oh, int ow, int sh, int sw, int ph, int pw)
{
    const long long total = n * hp * wp * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int s = t % wp; t /= wp;
        const int r = t % hp;
        const long long b = t / hp;
        T sum = T(0);
        for (int p = 0; p < ph; ++p) {
            const int rows_above = r - p;
            if (rows_above < 0 || rows_above % sh != 0 || rows_above / sh >= oh) continue;
            const int i = rows_above / sh;
            for (int q = 0; q < pw; ++q) {
                const int cols_before = s - q;
                if (cols_before < 0 || cols_before % sw != 0 || cols_before / sw >= ow) continue;
                const long long out = ((b * oh + i) * ow + cols_before / sw) * c + ch;
                if (win[out] == p * pw + q) sum += g[out];
            }
        }
        dpadded[e] = sum;
    }
}

// y[b, i, j, ch] ← Σ_{p, q} padded[b, i·sh + p, j·sw + q, ch] / count, count = count[i·ow + j]
// (real pixels per window, an (oh, ow) array) when per_window, else count_value.
template <typename T> __global__ void avg_pool(const T* padded, T* y, const T* count, int per_window, T count_value, long long n, int hp, int wp, int c, int oh, int ow, int sh, int sw, int ph, int pw)
{
    const long long total = n * oh * ow * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int j = t % ow; t /= ow;
        const int i = t % oh;
        const long long b = t / oh;
        const T* corner = padded + ((b * hp + i * sh) * wp + j * sw) * c + ch;
        T sum = corner[0];
        for (int k = 1; k < ph * pw; ++k) sum += corner[((long long)(k / pw) * wp + k % pw) * c];
        y[e] = sum / (per_window ? count[i * ow + j] : count_value);
    }
}

// dpadded[b, r, s, ch] ← Σ g[b, i, j, ch] / count over every window (i, j) that covers (r, s);
// count as in avg_pool.
template <typename T> __global__ void avg_pool_grad(const T* g, T* dpadded, const T* count, int per_window, T count_value, long long n, int hp, int wp, int c, int oh, int ow, int sh, int sw, int ph, int pw)
{
    const long long total = n * hp * wp * c;
    for (long long e = first_item(); e < total; e += grid_stride()) {
        long long t = e;
        const int ch = t % c; t /= c;
        const int s = t % wp; t /= wp;
        const int r = t % hp;
        const long long b = t / hp;
        T sum = T(0);
        for (int p = 0; p < ph; ++p) {
            const int rows_above = r - p;
            if (rows_above < 0 || rows_above % sh != 0 || rows_above / sh >= oh) continue;
            const int i = rows_above / sh;
            for (int q = 0; q < pw; ++q) {
                const int cols_before = s - q;
                if (cols_before < 0 || cols_before % sw != 0 || cols_before / sw >= ow) continue;
                const int j = cols_before / sw;
                const T share = per_window ? count[i * ow + j] : count_value;
                sum += g[((b * oh + i) * ow + j) * c + ch] / share;
            }
        }
        dpadded[e] = sum;
    }
}

// dropout_mask: mask[i] = (u_i >= rate), u_i uniform in [0, 1) from a counter-based hash of the
// key (seed, counter) and i: the splitmix64 finalizer of seed + counter*C1 + i*C2, its top `bits`
// bits (24 for float, 53 for double) times 2^-bits, exact in T. The host advances nothing: the
// caller adds 1 to key[1] on the device after each draw.
template <typename T> __global__ void dropout_mask(T* mask, const long long* key, T rate, int bits, long long n)
{
    const unsigned long long seed = (unsigned long long)key[0];
    const unsigned long long counter = (unsigned long long)key[1];
    const T scale = (T)1 / (T)(1ULL << bits);
    for (long long i = first_item(); i < n; i += grid_stride()) {
        unsigned long long z = seed + counter * 0xD1B54A32D192ED03ULL
                               + (unsigned long long)i * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        const T u = (T)(z >> (64 - bits)) * scale;
        mask[i] = u >= rate ? (T)1 : (T)0;
    }
}
