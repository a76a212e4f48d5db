#ifndef GW_NETADDR_H
#define GW_NETADDR_H
/* "HOST:PORT" (IPv4, or IPv6 in brackets: "[::1]:502") to a socket address.
 * Numeric addresses only: a gateway configured for the field must not depend
 * on DNS to reach a sensor. Port 0 is accepted only when allow_port0 (a
 * listener asking the system for a free port). Returns 0 or GW_EINVAL. */
#include <sys/socket.h>

int gw_sockaddr_parse(const char *hostport, int allow_port0, struct sockaddr_storage *ss);

#endif
