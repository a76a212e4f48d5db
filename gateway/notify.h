#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H
/* The service manager protocol (sd_notify(3), through libsystemd): READY=1
 * once listeners and the outbox are open, WATCHDOG=1 from a loop timer at half
 * the WatchdogSec= the manager asked for (WATCHDOG_USEC), so a stuck loop stops
 * the pings and gets the service restarted, and STOPPING=1 when the drain
 * begins. Without NOTIFY_SOCKET (not under systemd) every call is a no-op. */
#include <uv.h>

typedef struct gw_notify gw_notify;

/* Sends READY=1 (with a STATUS= line) and starts the watchdog pings when
 * asked for. NULL only when out of memory (nothing is sent then). */
gw_notify *gw_notify_ready(uv_loop_t *loop, const char *status);
/* Sends STOPPING=1; the pings go on through the drain. */
void gw_notify_stopping(gw_notify *n);
/* Stops the pings and closes the timer (freed on close). */
void gw_notify_close(gw_notify *n);

#endif
