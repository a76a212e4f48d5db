/* Civil (proleptic Gregorian) dates <-> days since 1970-01-01, for any year a 64-bit day
 * count holds. The algorithm is the well-known era/day-of-era decomposition (eras of 400
 * years = 146097 days, years starting on 1 March so the leap day comes last). */
#ifndef GW_BASE_CIVIL_H
#define GW_BASE_CIVIL_H

#include <stdint.h>

/* Days since 1970-01-01 of y-m-d (m 1..12, d 1..31; not range-checked: see
 * gw_days_in_month). Negative before 1970. */
int64_t gw_days_from_civil(int64_t y, unsigned m, unsigned d);

/* The date of a day count: the inverse of gw_days_from_civil. */
void gw_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* 28..31 for month m (1..12) of year y; 0 when m is out of range. */
unsigned gw_days_in_month(int64_t y, unsigned m);

#endif
