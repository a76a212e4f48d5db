#include "base/model.h"

#include <string.h>

static const char *const reason_names[GW_R__COUNT] = {
    [GW_R_NONE] = "none",
    [GW_R_OUT_OF_RANGE] = "out_of_range",
    [GW_R_COMM_FAIL] = "comm_fail",
    [GW_R_STALE] = "stale",
    [GW_R_FLATLINE] = "flatline",
    [GW_R_SENSOR_FAULT] = "sensor_fault",
    [GW_R_MAINTENANCE] = "maintenance",
    [GW_R_CALIBRATING] = "calibrating",
    [GW_R_MANUAL] = "manual",
    [GW_R_STOPPED] = "stopped",
    [GW_R_MISSING] = "missing",
    [GW_R_OVER_RANGE] = "over_range",
    [GW_R_DEVICE_FLAG] = "device_flag",
};

const char *gw_quality_name(int q)
{
    switch (q) {
    case GW_Q_GOOD:
        return "good";
    case GW_Q_UNCERTAIN:
        return "uncertain";
    default:
        return "bad";
    }
}

const char *gw_reason_name(int r)
{
    if (r < 0 || r >= GW_R__COUNT)
        return "none";
    return reason_names[r];
}

int gw_reason_from_name(const char *s)
{
    for (int i = 0; i < GW_R__COUNT; i++)
        if (strcmp(reason_names[i], s) == 0)
            return i;
    return -1;
}

const char *gw_level_name(int level)
{
    static const char *const names[] = {"none", "blue", "yellow", "orange", "red"};
    if (level < 0 || level > 4)
        return "none";
    return names[level];
}

const char *gw_alarm_state_name(int s)
{
    static const char *const names[] = {"raised", "updated", "cleared", "acknowledged"};
    if (s < 0 || s > 3)
        return "raised";
    return names[s];
}

int gw_strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n == 0)
        return GW_EINVAL;
    if (len >= n) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return GW_EINVAL;
    }
    memcpy(dst, src, len + 1);
    return GW_OK;
}
