/*
 * The shared test vectors for the C++ test: vectors.h (gen_vectors.py) uses
 * C99 designated initializers, which C++17 lacks, so this C file holds the
 * arrays and hands them out; test_cpp.cpp includes vectors.h for the types
 * only (TESSERA_VECTOR_TYPES_ONLY).
 */
#include "vectors.h"
#include "vectors_access.h"

const key_vector *test_key_vectors(size_t *count)
{
    *count = VECTOR_COUNT(key_vectors);
    return key_vectors;
}

const evidence_vector *test_evidence_vectors(size_t *count)
{
    *count = VECTOR_COUNT(evidence_vectors);
    return evidence_vectors;
}

const receipt_vector *test_receipt_vectors(size_t *count)
{
    *count = VECTOR_COUNT(receipt_vectors);
    return receipt_vectors;
}

const merkle_vector *test_merkle_vectors(size_t *count)
{
    *count = VECTOR_COUNT(merkle_vectors);
    return merkle_vectors;
}
