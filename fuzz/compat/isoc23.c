/* Compat shim for Jazzer.js's prebuilt Linux addon on glibc < 2.38 (Debian 12 has 2.36). Built by
 * scripts/fuzz.mjs at fuzz time (`cc -shared -fPIC`) into a cache dir and LD_PRELOADed into the
 * Jazzer process only; see fuzz/README.md. The addon was linked against glibc 2.38 and libstdc++ 13
 * and imports three symbols older ones lack:
 * - __isoc23_strtol / __isoc23_strtoul: C23 strtol / strtoul. The one difference from C11 is that
 *   base 0 or 2 also accepts a 0b/0B prefix (C23 7.24.1.7); implemented here so the meaning is
 *   exact, with C11's sign, ERANGE clamping and end-pointer rules.
 * - std::ios_base_library_init(): GCC 13's <iostream> references it so that libstdc++ sets up the
 *   standard streams; with libstdc++ 12 each user holds an ios_base::Init instead, which the
 *   constructor below does for the addon (it writes to std::cout and std::cerr). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

/* When the 0b rule applies: *neg gets the sign, returns the first binary digit; else NULL. */
static const char *binary_digits(const char *s, int base, int *neg) {
  if (base != 0 && base != 2) return NULL;
  while (isspace((unsigned char)*s)) s++;
  *neg = *s == '-';
  if (*s == '+' || *s == '-') s++;
  if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B') && (s[2] == '0' || s[2] == '1')) return s + 2;
  return NULL; /* "0b" without a digit: C11 parses the "0" and stops at 'b', as C23 does */
}

long __isoc23_strtol(const char *s, char **end, int base) {
  int neg;
  const char *d = binary_digits(s, base, &neg);
  if (!d) return strtol(s, end, base);
  int saved = errno; /* like strtol, touch errno only on ERANGE */
  errno = 0;
  unsigned long m = strtoul(d, end, 2); /* digits only: no sign, no space */
  if (!neg && (errno == ERANGE || m > LONG_MAX)) return errno = ERANGE, LONG_MAX;
  if (neg && (errno == ERANGE || m > (unsigned long)LONG_MAX + 1)) return errno = ERANGE, LONG_MIN;
  errno = saved;
  return neg ? (long)(0 - m) : (long)m;
}

unsigned long __isoc23_strtoul(const char *s, char **end, int base) {
  int neg;
  const char *d = binary_digits(s, base, &neg);
  if (!d) return strtoul(s, end, base);
  int saved = errno;
  errno = 0;
  unsigned long m = strtoul(d, end, 2);
  if (errno == ERANGE) return ULONG_MAX;
  errno = saved;
  return neg ? 0 - m : m;
}

/* std::ios_base_library_init(): nothing to do beyond the Init held below (as in libstdc++ 13). */
void _ZSt21ios_base_library_initv(void) {}

extern void _ZNSt8ios_base4InitC1Ev(void *self); /* std::ios_base::Init::Init() */
extern void _ZNSt8ios_base4InitD1Ev(void *self); /* std::ios_base::Init::~Init() */
static char stream_init; /* an empty class object, as <iostream> of GCC 12 declares per file */
__attribute__((constructor)) static void streams_up(void) { _ZNSt8ios_base4InitC1Ev(&stream_init); }
__attribute__((destructor)) static void streams_down(void) { _ZNSt8ios_base4InitD1Ev(&stream_init); }
