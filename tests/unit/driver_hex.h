/*
 * driver_hex.h - hex fields of the conformance drivers' input lines
 * (spf_driver, dmarc_driver): "-" is the empty string.
 */
#ifndef DAKIYA_DRIVER_HEX_H
#define DAKIYA_DRIVER_HEX_H

#include <stdio.h>
#include <string.h>

#include "core/buf.h"

static inline void driver_unhex(const char *h, struct buf *out)
{
	buf_reset(out);
	if (strcmp(h, "-") == 0)
		return;
	for (size_t i = 0; h[i] && h[i + 1]; i += 2) {
		unsigned v;
		if (sscanf(h + i, "%2x", &v) != 1)
			break;
		buf_putc(out, (char)v);
	}
}

#endif
