/* transport.c - parses guest/IPC URIs and opens listening sockets.
 *
 * All transports carry the same byte stream, so everything above this file
 * is transport-agnostic. */
#include "lib/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

const char *transport_unix_path(const char *uri)
{
    if (strncmp(uri, "unix:", 5) == 0)
        return uri + 5;
    if (uri[0] == '/')
        return uri;
    return NULL;
}

int transport_vsock_usable(void)
{
    /* A guest reaches a host listener through the host-side transport
     * (vhost-vsock). Without it a vsock listener would wait for nobody. */
    return access("/dev/vhost-vsock", F_OK) == 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

static int listen_unix(const char *path, unsigned mode, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (unix_addr(path, &sa, err, errlen) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(AF_UNIX): %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            close(fd);
            return -1;
        }
        /* a live daemon answers connect(); only a stale socket is removed */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            close(fd);
            snprintf(err, errlen, "%s is in use by a running process", path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (mode && chmod(path, mode) < 0) {
        snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (listen(fd, SOMAXCONN) < 0) {           /* a burst of reconnecting apps after a restart */
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int split_host_port(const char *rest, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (rest[0] == '[') {                          /* [::1]:9001 */
        const char *close = strchr(rest, ']');
        if (!close || close[1] != ':')
            return -1;
        if ((size_t)(close - rest - 1) >= hostlen)
            return -1;
        memcpy(host, rest + 1, (size_t)(close - rest - 1));
        host[close - rest - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon || (size_t)(colon - rest) >= hostlen)
            return -1;
        memcpy(host, rest, (size_t)(colon - rest));
        host[colon - rest] = '\0';
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
        return -1;
    strcpy(port, colon + 1);
    return 0;
}

static int listen_tcp(const char *rest, char *err, size_t errlen)
{
    char host[256], port[16];
    if (split_host_port(rest, host, sizeof host, port, sizeof port) < 0) {
        snprintf(err, errlen, "bad tcp URI 'tcp://%s': expected tcp://HOST:PORT", rest);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "tcp://%s: %s", rest, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        snprintf(err, errlen, "tcp://%s: %s", rest, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int listen_vsock(const char *rest, char *err, size_t errlen)
{
    char cid[32], port[16];
    if (split_host_port(rest, cid, sizeof cid, port, sizeof port) < 0) {
        snprintf(err, errlen, "bad vsock URI 'vsock://%s': expected vsock://any:PORT or vsock://CID:PORT", rest);
        return -1;
    }
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK};
    char *end;
    sa.svm_cid = strcmp(cid, "any") == 0 ? VMADDR_CID_ANY : (unsigned)strtoul(cid, &end, 10);
    sa.svm_port = (unsigned)strtoul(port, &end, 10);
    if (*end != '\0') {
        snprintf(err, errlen, "bad vsock port in 'vsock://%s'", rest);
        return -1;
    }
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(AF_VSOCK): %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "vsock://%s: %s", rest, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int transport_listen(const char *uri, unsigned mode, char *err, size_t errlen)
{
    const char *path = transport_unix_path(uri);
    if (path)
        return listen_unix(path, mode, err, errlen);
    if (strncmp(uri, "tcp://", 6) == 0)
        return listen_tcp(uri + 6, err, errlen);
    if (strncmp(uri, "vsock://", 8) == 0)
        return listen_vsock(uri + 8, err, errlen);
    snprintf(err, errlen, "unsupported URI '%s': use vsock://any:PORT, tcp://HOST:PORT or unix:PATH", uri);
    return -1;
}

/* ---- the other side: connecting (polarisctl guest, tests) ---- */

/* socket + connect for one address; -1 with "uri: reason" in err. */
static int connect_to(int family, const struct sockaddr *sa, socklen_t len, const char *uri,
                      char *err, size_t errlen)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, sa, len) < 0) {
        snprintf(err, errlen, "%s: %s", uri, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int transport_connect(const char *uri, char *err, size_t errlen)
{
    const char *path = transport_unix_path(uri);
    if (path) {
        struct sockaddr_un sa;
        if (unix_addr(path, &sa, err, errlen) < 0)
            return -1;
        return connect_to(AF_UNIX, (struct sockaddr *)&sa, sizeof sa, uri, err, errlen);
    }
    char host[256], port[16];
    if (strncmp(uri, "tcp://", 6) == 0) {
        if (split_host_port(uri + 6, host, sizeof host, port, sizeof port) < 0) {
            snprintf(err, errlen, "bad tcp URI '%s': expected tcp://HOST:PORT", uri);
            return -1;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_NUMERICSERV};
        struct addrinfo *ai;
        int rc = getaddrinfo(host, port, &hints, &ai);
        if (rc != 0) {
            snprintf(err, errlen, "%s: %s", uri, gai_strerror(rc));
            return -1;
        }
        int fd = -1;
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next)
            fd = connect_to(a->ai_family, a->ai_addr, a->ai_addrlen, uri, err, errlen);
        freeaddrinfo(ai);
        return fd;
    }
    if (strncmp(uri, "vsock://", 8) == 0) {
        char *end;
        if (split_host_port(uri + 8, host, sizeof host, port, sizeof port) < 0) {
            snprintf(err, errlen, "bad vsock URI '%s': expected vsock://CID:PORT", uri);
            return -1;
        }
        unsigned long cid = strcmp(host, "host") == 0 ? VMADDR_CID_HOST : strtoul(host, &end, 10);
        unsigned long p = strtoul(port, &end, 10);
        struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = (unsigned)cid, .svm_port = (unsigned)p};
        return connect_to(AF_VSOCK, (struct sockaddr *)&sa, sizeof sa, uri, err, errlen);
    }
    snprintf(err, errlen, "unknown URI '%s' (unix:PATH, tcp://HOST:PORT, vsock://CID:PORT)", uri);
    return -1;
}
