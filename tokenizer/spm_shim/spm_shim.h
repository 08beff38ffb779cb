/* C interface to SentencePiece, built as its own shared library (qins_spm).
 *
 * Why: Debian's libsentencepiece.so carries (and exports) its own protobuf-lite 3.14 while
 * libtorch needs the system libprotobuf 3.21. In one global symbol scope the two collide: either
 * protobuf's initialisers bind to sentencepiece's copies (crash before main) or sentencepiece's
 * code binds to the system library (fatal version check). On Linux the tokenizer therefore loads
 * this shim with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): sentencepiece resolves protobuf to its own
 * copies and stays out of the global scope. Elsewhere (macOS two-level namespaces) it is linked
 * directly. Only plain C types cross this boundary. */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qspm qspm;

/* Error text of the last failed call on this thread (never NULL). */
const char* qspm_last_error(void);

qspm* qspm_new(void);
void qspm_free(qspm* p);
/* Returns 0 on success. */
int qspm_load(qspm* p, const char* model, size_t size);
int qspm_piece_size(const qspm* p);
int qspm_bos_id(const qspm* p);
int qspm_piece_to_id(const qspm* p, const char* piece, size_t size);
/* Copies the piece into buf (up to cap bytes); returns its full length. */
size_t qspm_id_to_piece(const qspm* p, int id, char* buf, size_t cap);
int qspm_is_control(const qspm* p, int id);
int qspm_is_byte(const qspm* p, int id);
int qspm_is_unknown(const qspm* p, int id);
/* Encodes text; writes up to cap ids; returns the full count, or -1 on error. */
long qspm_encode(const qspm* p, const char* text, size_t size, int* ids, size_t cap);

/* Trains a model from n key/value argument pairs. On success returns 0 and a malloc'ed model in
 * *model (free with qspm_free_buffer). */
int qspm_train(const char* const* keys, const char* const* values, size_t n, char** model, size_t* model_size);
void qspm_free_buffer(char* buf);

#ifdef __cplusplus
}
#endif
