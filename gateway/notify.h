#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H
/* The service manager protocol (sd_notify(3), spoken directly: no libsystemd,
 * see docs/operations.md "Service"): READY=1 once listeners and the outbox are
 * open, WATCHDOG=1 from a loop timer at half the WatchdogSec= the manager asked
 * for (WATCHDOG_USEC, when WATCHDOG_PID is unset or names us), so a stuck loop
 * stops the pings and gets the service restarted, and STOPPING=1 when the
 * drain begins. Each message is one datagram on a non-blocking AF_UNIX socket
 * to the address in NOTIFY_SOCKET; a send that would block is dropped, counted
 * and logged, never waited for. Without NOTIFY_SOCKET (not under systemd)
 * every call is a no-op; an unusable one is a warning, never a failed start.
 * The environment is read once and left as it is (never unset). */
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

typedef struct gw_notify gw_notify;

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, sends READY=1 (with a
 * STATUS= line) and starts the watchdog pings when asked for. NULL only when
 * out of memory (nothing is sent then). */
gw_notify *gw_notify_ready(uv_loop_t *loop, const char *status);
/* Sends STOPPING=1; the pings go on through the drain. */
void gw_notify_stopping(gw_notify *n);
/* Stops the pings, closes the socket and the timer (freed on close). */
void gw_notify_close(gw_notify *n);

/* Turns a NOTIFY_SOCKET value into an address for sendto(): "/path" is a file
 * system socket, "@name" one in Linux's abstract namespace (the '@' becomes
 * the leading NUL byte and *len ends with the name: no trailing NUL counts).
 * 0 on success; -EINVAL for an empty value, a bare "@", or anything that is
 * neither (a relative path, "vsock:..."); -ENAMETOOLONG when it does not fit
 * sun_path (a path of 107 bytes plus its NUL, an '@' and 107 bytes of name). */
int gw_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len);

/* Whether the manager expects watchdog pings from process self, from the
 * values of WATCHDOG_USEC and WATCHDOG_PID (either may be NULL: unset), as
 * sd_watchdog_enabled(3) says: 1 and *usec > 0 when it does; 0 when it does
 * not (no WATCHDOG_USEC, or WATCHDOG_PID names another process); -EINVAL when
 * a value is not a positive decimal number. */
int gw_notify_watchdog(const char *usec, const char *pid, long self, uint64_t *out);

#endif
