/* The arrays of vectors.h, handed out by vectors.c (C, for C and C++). */
#ifndef TESSERA_TEST_VECTORS_ACCESS_H
#define TESSERA_TEST_VECTORS_ACCESS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

const key_vector *test_key_vectors(size_t *count);
const evidence_vector *test_evidence_vectors(size_t *count);
const receipt_vector *test_receipt_vectors(size_t *count);
const merkle_vector *test_merkle_vectors(size_t *count);

#ifdef __cplusplus
}
#endif

#endif
