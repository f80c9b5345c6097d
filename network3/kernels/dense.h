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
        u[p] = shuffle(a[2 * p], a[2 * p + 1], e1) + shuffle(a[2 * p], a[2 * p + 1], o1);
    for (int p = 0; p < 2; ++p)
        w[p] = shuffle(u[2 * p], u[2 * p + 1], e2) + shuffle(u[2 * p], u[2 * p + 1], o2);
    return shuffle(w[0], w[1], e3) + shuffle(w[0], w[1], o3);
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

    /* y[r, col0 .. col0+NVB*VN) = sum over k < K of x[r, k] w[k, ...] for R rows
     * (x[r, k] at x[r * xs + k * xk], row k of w at w + k * ws); then y = acc, or with
     * ADD, y = beta y + alpha acc.  The last block of columns may be narrower than
     * its vectors: then w is a zero-padded copy and only `width` columns are stored. */
    template <int R, int NVB, bool ADD>
    static inline __attribute__((always_inline)) void product_block(
            const T* __restrict x, int xs, int xk, int K, const T* __restrict w, int ws,
            T* __restrict y, int width, T alpha, T beta) {
        V acc[R][NVB];
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < NVB; ++v) acc[r][v] = V{};
        for (int k = 0; k < K; ++k) {
            V wv[NVB];
            for (int v = 0; v < NVB; ++v) {
                wv[v] = load(w + (size_t)k * ws + v * VN);
                in_register(wv[v]);
            }
            for (int r = 0; r < R; ++r) {
                const T xv = x[(size_t)r * xs + (size_t)k * xk];
                for (int v = 0; v < NVB; ++v) acc[r][v] += xv * wv[v];
            }
        }
        for (int r = 0; r < R; ++r) {
            T* out = y + (size_t)r * N_OUT;
            if (width == NVB * VN) {
                for (int v = 0; v < NVB; ++v)
                    store(out + v * VN, ADD ? beta * load(out + v * VN) + alpha * acc[r][v] : acc[r][v]);
            } else {
                for (int c = 0; c < width; ++c)
                    out[c] = ADD ? beta * out[c] + alpha * acc[r][c / VN][c % VN] : acc[r][c / VN][c % VN];
            }
        }
    }

    /* y (M, N_OUT) = x (M, K) w (K, N_OUT), x[r, k] at x[r * xs + k * xk], RB rows per
     * pass over w; with ADD, y = beta y + alpha x w.  wtail: scratch for the columns
     * after the last whole block (tail_size). */
    template <bool ADD>
    static inline __attribute__((always_inline)) void product(
            int M, const T* __restrict x, int xs, int xk, int K, const T* __restrict w,
            T* __restrict y, T* __restrict wtail, T alpha = 1, T beta = 0) {
        enum { BW = CB * VN, TAILV = (REST + VN - 1) / VN };
        if (REST) {
            for (int k = 0; k < K; ++k)
                for (int c = 0; c < TAILV * VN; ++c)
                    wtail[(size_t)k * TAILV * VN + c] = c < REST ? w[(size_t)k * N_OUT + NBLK * BW + c] : T(0);
        }
        int r = 0;
        for (; r + RB <= M; r += RB) {
            for (int b = 0; b < NBLK; ++b)
                product_block<RB, CB, ADD>(x + (size_t)r * xs, xs, xk, K, w + b * BW, N_OUT,
                                           y + (size_t)r * N_OUT + b * BW, BW, alpha, beta);
            if (REST)
                product_block<RB, TAILV + (TAILV == 0), ADD>(x + (size_t)r * xs, xs, xk, K, wtail,
                                           TAILV * VN, y + (size_t)r * N_OUT + NBLK * BW, REST, alpha, beta);
        }
        for (; r < M; ++r) {
            for (int b = 0; b < NBLK; ++b)
                product_block<1, CB, ADD>(x + (size_t)r * xs, xs, xk, K, w + b * BW, N_OUT,
                                          y + (size_t)r * N_OUT + b * BW, BW, alpha, beta);
            if (REST)
                product_block<1, TAILV + (TAILV == 0), ADD>(x + (size_t)r * xs, xs, xk, K, wtail,
                                          TAILV * VN, y + (size_t)r * N_OUT + NBLK * BW, REST, alpha, beta);
        }
    }

    /* Scratch that forward, weight_grad and update need, in values of T. */
    static size_t scratch_size(int B) {
        return (size_t)(N_IN > B ? N_IN : B) * ((REST + VN - 1) / VN) * VN + 1;
    }

    /* y (B, N_OUT) = x (B, N_IN) w (N_IN, N_OUT) */
    static void forward(int B, const T* __restrict x, const T* __restrict w, T* __restrict y,
                        T* __restrict scratch) {
        product<false>(B, x, N_IN, 1, N_IN, w, y, scratch);
    }

    /* gw (N_IN, N_OUT) = x^T g: the same product, reading x by columns. */
    static void weight_grad(int B, const T* __restrict x, const T* __restrict g, T* __restrict gw,
                            T* __restrict scratch) {
        product<false>(N_IN, x, 1, N_IN, B, g, gw, scratch);
    }

    /* w = beta w + alpha x^T g, in place: an SGD step on w in one pass over it. */
    static void update(int B, const T* __restrict x, const T* __restrict g, T* __restrict w,
                       T alpha, T beta, T* __restrict scratch) {
        product<true>(N_IN, x, 1, N_IN, B, g, w, scratch, alpha, beta);
    }

    /* gx[r, k] = g[r] . w[k], one scalar */
    static inline T dot_row(const T* __restrict gr, const T* __restrict wk) {
        T s = 0;
        for (int j = 0; j < N_OUT; ++j) s += gr[j] * wk[j];
        return s;
    }

    enum { KB = 8 };  /* rows of w per block of the input gradient */

    /* gx[r, k0 .. k0+KB) = g[r] . w[k] for every row r of g: KB rows of w at a time,
     * each dotted with every row of g while they sit in the L1 cache. */
    static inline __attribute__((always_inline)) void input_grad_block(
            int B, const T* __restrict g, const T* __restrict w, T* __restrict gx, int k0) {
        enum { NV = N_OUT / VN, TAIL = N_OUT % VN };
        const T* wk = w + (size_t)k0 * N_OUT;
        if constexpr (sizeof(T) == 4 && (int)VN == (int)KB) {
            for (int r = 0; r < B; ++r) {
                const T* gr = g + (size_t)r * N_OUT;
                V acc[KB];
                for (int kk = 0; kk < KB; ++kk) acc[kk] = V{};
                for (int v = 0; v < NV; ++v) {
                    V gv = load(gr + v * VN);
                    in_register(gv);
                    for (int kk = 0; kk < KB; ++kk) acc[kk] += gv * load(wk + kk * N_OUT + v * VN);
                }
                V s = sums8(acc);
                for (int kk = 0; kk < KB; ++kk)
                    for (int t = 0; t < TAIL; ++t) s[kk] += gr[NV * VN + t] * wk[kk * N_OUT + NV * VN + t];
                store(gx + (size_t)r * N_IN + k0, s);
            }
        } else {
            for (int kk = 0; kk < KB; ++kk)
                for (int r = 0; r < B; ++r)
                    gx[(size_t)r * N_IN + k0 + kk] = dot_row(g + (size_t)r * N_OUT, wk + kk * N_OUT);
        }
    }

    /* gx (B, N_IN) = g (B, N_OUT) w^T */
    static void input_grad(int B, const T* __restrict g, const T* __restrict w, T* __restrict gx) {
        int k0 = 0;
        for (; k0 + KB <= N_IN; k0 += KB) input_grad_block(B, g, w, gx, k0);
        for (; k0 < N_IN; ++k0)
            for (int r = 0; r < B; ++r)
                gx[(size_t)r * N_IN + k0] = dot_row(g + (size_t)r * N_OUT, w + (size_t)k0 * N_OUT);
    }

};

}  /* namespace n3 */
