/* luaskills.h - umbrella header of the native core.  Cython declaration files include this one
 * header; the platform split lives in lsr_sync.h and in setup.py's choice of sources. */
#ifndef LUASKILLS_H
#define LUASKILLS_H
#include "lsr_sync.h"
#include "notify.h"
#include "ringbuf.h"
#endif
