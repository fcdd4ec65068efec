/*
 * The machine's floor for float32 decoding: llama2.c's matmul loop (one
 * output row per iteration, OpenMP across rows) streaming the weight bytes
 * of stories110M's decoder blocks and head, ~438 MB, once per "token".
 * A token of a 110M model cannot be faster than reading its weights once.
 *
 *   gcc -Ofast -march=native -fopenmp bench/matvec.c -o /tmp/matvec
 *   OMP_NUM_THREADS=2 /tmp/matvec
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void matmul(float *out, const float *x, const float *w, int n, int d) {
  int i;
#pragma omp parallel for private(i)
  for (i = 0; i < d; i++) {
    float sum = 0.0f;
    for (int j = 0; j < n; j++) sum += w[(size_t)i * n + j] * x[j];
    out[i] = sum;
  }
}

static int byValue(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  /* stories110M: dim 768, hidden 2048, 12 layers, vocab 32000 (wq, wk, wv, wo, w1, w3, w2 per layer; the head) */
  const int dim = 768, hidden = 2048, layers = 12, vocab = 32000;
  const size_t perLayer = 4 * (size_t)dim * dim + 3 * (size_t)dim * hidden;
  const size_t total = layers * perLayer + (size_t)vocab * dim;
  float *w = malloc(total * sizeof(float));
  float *x = malloc(hidden * sizeof(float)), *out = malloc(vocab * sizeof(float));
  if (!w || !x || !out) return 1;
  for (size_t i = 0; i < total; i++) w[i] = (float)(i % 1000) * 1e-3f;
  for (int i = 0; i < hidden; i++) x[i] = 0.5f;
  enum { tokens = 21 };
  double times[tokens];
  for (int t = -2; t < tokens; t++) { /* two warm-up passes */
    double start = seconds();
    const float *p = w;
    for (int l = 0; l < layers; l++) {
      for (int k = 0; k < 4; k++, p += (size_t)dim * dim) matmul(out, x, p, dim, dim);
      for (int k = 0; k < 2; k++, p += (size_t)dim * hidden) matmul(out, x, p, dim, hidden);
      matmul(out, x, p, hidden, dim), p += (size_t)dim * hidden;
    }
    matmul(out, x, p, dim, vocab);
    if (t >= 0) times[t] = seconds() - start;
  }
  qsort(times, tokens, sizeof(double), byValue);
  const double median = times[tokens / 2], best = times[0];
  printf("%.1f MB of float32 weights per token: median %.1f tokens/s (%.1f GB/s), best %.1f tokens/s (check %g)\n", total * 4 / 1e6,
         1 / median, total * 4 / median / 1e9, 1 / best, out[0]);
  return 0;
}
