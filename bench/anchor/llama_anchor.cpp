// llama.cpp's own prompt-processing and generation speed, measured as llama-bench measures it
// (pp: one batch of random tokens; tg: random tokens decoded one at a time; the KV cache is
// cleared before each repetition, after one warm-up run; mean tokens/s over the repetitions).
//
//   llama-anchor MODEL.gguf THREADS PROMPT_TOKENS GEN_TOKENS REPETITIONS
//
// Prints two lines: "pp<N> <mean> <stddev>" and "tg<N> <mean> <stddev>" (tokens/s).
#include "llama.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

static void quiet(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static double now_s() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Decodes n random tokens in one batch (after BOS), as llama-bench's test_prompt.
static bool prompt(llama_context * ctx, const llama_vocab * vocab, int n, std::mt19937 & rng) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> tokens(n);
    tokens[0] = llama_vocab_bos(vocab);
    for (int i = 1; i < n; i++) {
        tokens[i] = (llama_token) (rng() % n_vocab);
    }
    const int n_batch = (int) llama_n_batch(ctx);
    for (int at = 0; at < n; at += n_batch) {
        const int len = std::min(n_batch, n - at);
        if (llama_decode(ctx, llama_batch_get_one(tokens.data() + at, len)) != 0) {
            return false;
        }
    }
    llama_synchronize(ctx);
    return true;
}

// Decodes n tokens one at a time, as llama-bench's test_gen.
static bool generate(llama_context * ctx, const llama_vocab * vocab, int n, std::mt19937 & rng) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_token token = llama_vocab_bos(vocab);
    for (int i = 0; i < n; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) {
            return false;
        }
        llama_synchronize(ctx);
        token = (llama_token) (rng() % n_vocab);
    }
    return true;
}

static void report(const char * name, int n, const std::vector<double> & seconds) {
    std::vector<double> rates;
    for (double s : seconds) {
        rates.push_back(n / s);
    }
    double mean = 0;
    for (double r : rates) {
        mean += r;
    }
    mean /= rates.size();
    double var = 0;
    for (double r : rates) {
        var += (r - mean) * (r - mean);
    }
    const double sd = rates.size() > 1 ? std::sqrt(var / (rates.size() - 1)) : 0.0;
    printf("%s%d %.2f %.2f\n", name, n, mean, sd);
}

int main(int argc, char ** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL.gguf THREADS PROMPT_TOKENS GEN_TOKENS REPETITIONS\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const int threads = atoi(argv[2]);
    const int n_prompt = atoi(argv[3]);
    const int n_gen = atoi(argv[4]);
    const int reps = atoi(argv[5]);

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(path, llama_model_default_params());
    if (model == nullptr) {
        fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_prompt + n_gen;
    cparams.n_batch = n_prompt;
    cparams.n_threads = threads;
    cparams.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cparams);
    if (ctx == nullptr) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::mt19937 rng(42);

    std::vector<double> pp, tg;
    for (int rep = -1; rep < reps; rep++) {  // rep -1 is the warm-up
        llama_memory_clear(llama_get_memory(ctx), true);
        const double t0 = now_s();
        if (!prompt(ctx, vocab, n_prompt, rng)) {
            fprintf(stderr, "prompt decoding failed\n");
            return 1;
        }
        const double t1 = now_s();
        llama_memory_clear(llama_get_memory(ctx), true);
        const double t2 = now_s();
        if (!generate(ctx, vocab, n_gen, rng)) {
            fprintf(stderr, "generation failed\n");
            return 1;
        }
        const double t3 = now_s();
        if (rep >= 0) {
            pp.push_back(t1 - t0);
            tg.push_back(t3 - t2);
        }
    }
    report("pp", n_prompt, pp);
    report("tg", n_gen, tg);

    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
