/*
 * fuzz_check.h - what every libFuzzer target here shares: CHECK(cond)
 * aborts with the failed invariant and where, so that libFuzzer keeps the
 * input as a crash.
 */
#ifndef DAKIYA_FUZZ_CHECK_H
#define DAKIYA_FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(                                                                   \
			    stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
