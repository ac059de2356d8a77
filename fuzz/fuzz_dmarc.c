/*
 * fuzz_dmarc.c - libFuzzer target for the DMARC record parser (dmarc.h).
 *
 * Invariants: parsing twice gives the same answer; a parsed record has
 * pct <= 100, sp/np set, at most DMARC_URIS_MAX addresses per list, each
 * with an "@" and within DMARC_ADDR_MAX; a failed parse leaves the record
 * zeroed. Any violation aborts.
 */
#include <string.h>

#include "auth/dmarc.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmarc_record r, r2;
	struct buf why = BUF_INIT;
	enum dmarc_parse e = dmarc_record_parse((const char *)data, size, &r, &why);
	enum dmarc_parse e2 = dmarc_record_parse((const char *)data, size, &r2, &why);
	CHECK(e == e2);
	CHECK(memcmp(&r, &r2, sizeof r) == 0);
	if (e == DMARC_OK) {
		CHECK(r.pct <= 100);
		CHECK(r.p <= DMARC_REJECT && r.sp <= DMARC_REJECT && r.np <= DMARC_REJECT);
		CHECK(r.nrua <= DMARC_URIS_MAX && r.nruf <= DMARC_URIS_MAX);
		for (size_t i = 0; i < r.nrua; i++)
			CHECK(strchr(r.rua[i], '@') != NULL && strlen(r.rua[i]) <= DMARC_ADDR_MAX);
		CHECK(r.psd == 'y' || r.psd == 'n' || r.psd == 'u');
		CHECK(strlen(r.fo) < sizeof r.fo);
	} else {
		static const struct dmarc_record zero;
		CHECK(memcmp(&r, &zero, sizeof r) == 0);
	}
	buf_free(&why);
	return 0;
}
