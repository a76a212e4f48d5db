#include "base/netaddr.h"

#include "base/model.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

int gw_sockaddr_parse(const char *hostport, int allow_port0, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport)
        return GW_EINVAL;
    const char *h = hostport;
    size_t hl = (size_t)(colon - hostport);
    if (h[0] == '[') {
        if (hl < 2 || h[hl - 1] != ']')
            return GW_EINVAL;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host))
        return GW_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < (allow_port0 ? 0 : 1) || port > 65535)
        return GW_EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return GW_OK;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return GW_OK;
    return GW_EINVAL;
}
