/* The three products of a fully connected layer, y = x w, for small mini-batches.
 *
 * At a mini-batch of 10 a general GEMM spends much of its time copying w
 * into packed panels; these loops stream w once in its own row-major layout
 * and keep the partial sums in vector registers.  N_IN and N_OUT are
 * template parameters; the batch size is not.
 */
#include <stdint.h>
#include <string.h>

namespace n3 {

/* Sums of 8 vectors of floats at once: lane i of the result is the sum of a[i]. */
static inline __attribute__((always_inline)) Vec<float>::type sums8(const Vec<float>::type* a) {
    typedef Vec<float>::type V;
    typedef Vec<float>::ints I;
    const I e1 = {0, 8, 2, 10, 4, 12, 6, 14}, o1 = {1, 9, 3, 11, 5, 13, 7, 15};
    const I e2 = {0, 1, 8, 9, 4, 5, 12, 13}, o2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const I e3 = {0, 1, 2, 3, 8, 9, 10, 11}, o3 = {4, 5, 6, 7, 12, 13, 14, 15};
    V u[4], w[2];
    for (int p = 0; p < 4; ++p)
        u[p] = __builtin_shuffle(a[2 * p], a[2 * p + 1], e1) + __builtin_shuffle(a[2 * p], a[2 * p + 1], o1);
    for (int p = 0; p < 2; ++p)
        w[p] = __builtin_shuffle(u[2 * p], u[2 * p + 1], e2) + __builtin_shuffle(u[2 * p], u[2 * p + 1], o2);
    return __builtin_shuffle(w[0], w[1], e3) + __builtin_shuffle(w[0], w[1], o3);
}

template <typename T, int N_IN, int N_OUT>
struct Dense {
    enum {
        VN = Vec<T>::N,
        CB = 2,                              /* vectors of columns per block */
        NBLK = N_OUT / (CB * VN),            /* whole blocks of columns */
        REST = N_OUT - NBLK * CB * VN,       /* columns after them, done lane by lane */
        RB = 10                              /* rows per pass over w */
    };
    typedef typename Vec<T>::type V;

    /* y[r, col0 .. col0+CB*VN) = sum over k < K of x[r, k] w[k, ...] for R rows;
     * row r of x starts at x + r * xs. */
    template <int R>
    static inline __attribute__((always_inline)) void product_block(
            const T* __restrict x, int xs, int K, const T* __restrict w, T* __restrict y, int col0) {
        V acc[R][CB];
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < CB; ++v) acc[r][v] = V{};
        for (int k = 0; k < K; ++k) {
            V wv[CB];
            for (int v = 0; v < CB; ++v) wv[v] = load(w + (size_t)k * N_OUT + col0 + v * VN);
            for (int r = 0; r < R; ++r) {
                const T xv = x[(size_t)r * xs + k];
                for (int v = 0; v < CB; ++v) acc[r][v] += xv * wv[v];
            }
        }
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < CB; ++v) store(y + (size_t)r * N_OUT + col0 + v * VN, acc[r][v]);
    }

    template <int R>
    static inline __attribute__((always_inline)) void product_rows(
            const T* __restrict x, int xs, int K, const T* __restrict w, T* __restrict y) {
        for (int b = 0; b < NBLK; ++b) product_block<R>(x, xs, K, w, y, b * CB * VN);
        if (REST) {
            T acc[R][REST + 1];
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < REST; ++c) acc[r][c] = 0;
            for (int k = 0; k < K; ++k)
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < REST; ++c)
                        acc[r][c] += x[(size_t)r * xs + k] * w[(size_t)k * N_OUT + NBLK * CB * VN + c];
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < REST; ++c) y[(size_t)r * N_OUT + NBLK * CB * VN + c] = acc[r][c];
        }
    }

    /* y (M, N_OUT) = x (M, K) w (K, N_OUT), x's rows xs apart, RB rows per pass over w. */
    static inline __attribute__((always_inline)) void product(
            int M, const T* __restrict x, int xs, int K, const T* __restrict w, T* __restrict y) {
        int r = 0;
        for (; r + RB <= M; r += RB) product_rows<RB>(x + (size_t)r * xs, xs, K, w, y + (size_t)r * N_OUT);
        for (; r < M; ++r) product_rows<1>(x + (size_t)r * xs, xs, K, w, y + (size_t)r * N_OUT);
    }

    /* y (B, N_OUT) = x (B, N_IN) w (N_IN, N_OUT) */
    static void forward(int B, const T* __restrict x, const T* __restrict w, T* __restrict y) {
        product(B, x, N_IN, N_IN, w, y);
    }

    /* gw (N_IN, N_OUT) = x^T g: the same product with x transposed into xt (N_IN * B scratch). */
    static void weight_grad(int B, const T* __restrict x, const T* __restrict g, T* __restrict gw,
                            T* __restrict xt) {
        for (int r = 0; r < B; ++r)
            for (int k = 0; k < N_IN; ++k) xt[(size_t)k * B + r] = x[(size_t)r * N_IN + k];
        product(N_IN, xt, B, B, g, gw);
    }

    /* gx[r, k] = g[r] . w[k], one scalar */
    static inline T dot_row(const T* __restrict gr, const T* __restrict wk) {
        T s = 0;
        for (int j = 0; j < N_OUT; ++j) s += gr[j] * wk[j];
        return s;
    }

    /* gx (B, N_IN) = g (B, N_OUT) w^T: eight rows of w at a time, each dotted with
     * every row of g while they sit in the L1 cache. */
    static void input_grad(int B, const T* __restrict g, const T* __restrict w, T* __restrict gx) {
        enum { NV = N_OUT / VN, TAIL = N_OUT % VN, KB = 8 };
        int k0 = 0;
        if constexpr (sizeof(T) == 4 && VN == 8) {
            for (; k0 + KB <= N_IN; k0 += KB) {
                const T* wk = w + (size_t)k0 * N_OUT;
                for (int r = 0; r < B; ++r) {
                    const T* gr = g + (size_t)r * N_OUT;
                    V acc[KB];
                    for (int kk = 0; kk < KB; ++kk) acc[kk] = V{};
                    for (int v = 0; v < NV; ++v) {
                        const V gv = load(gr + v * VN);
                        for (int kk = 0; kk < KB; ++kk) acc[kk] += gv * load(wk + kk * N_OUT + v * VN);
                    }
                    V s = sums8(acc);
                    for (int kk = 0; kk < KB; ++kk)
                        for (int t = 0; t < TAIL; ++t) s[kk] += gr[NV * VN + t] * wk[kk * N_OUT + NV * VN + t];
                    store(gx + (size_t)r * N_IN + k0, s);
                }
            }
        }
        for (; k0 < N_IN; ++k0)
            for (int r = 0; r < B; ++r)
                gx[(size_t)r * N_IN + k0] = dot_row(g + (size_t)r * N_OUT, w + (size_t)k0 * N_OUT);
    }

};

}  /* namespace n3 */
