/*
 * listen.c - the API's listening sockets from what users type (web.h,
 * web_listen_all()): "127.0.0.1:9628", "[::1]:9628", ":9628" (every
 * address), "[::]:9628" (IPv6 and IPv4), "localhost:9628" or any host
 * name (every address it resolves to).
 *
 * Opening them is the step that may need privilege (a port below 1024),
 * so it is done before anything else and the descriptors are handed to
 * web_start(), possibly in a process that holds none.
 */
#include "web/web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"

#define WEB_LISTEN_BACKLOG 128

/* Splits spec into host (empty: every address; brackets removed) and
 * port.  *bracketed says the host was written [v6].  Returns 0, or -1
 * with EINVAL. */
static int listen_split(const char *spec, char *host, size_t hostlen,
			unsigned *port, int *bracketed)
{
	const char *colon, *p;
	char *end;
	unsigned long v;
	size_t hl;

	if (!spec || !*spec)
		goto bad;
	*bracketed = spec[0] == '[';
	if (*bracketed) {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':')
			goto bad;
		hl = (size_t)(close - spec - 1);
		p = spec + 1;
		colon = close + 1;
		if (hl == 0)
			goto bad;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || memchr(spec, ':', (size_t)(colon - spec)))
			goto bad; /* an IPv6 address needs its brackets */
		hl = (size_t)(colon - spec);
		p = spec;
	}
	if (hl >= hostlen)
		goto bad;
	memcpy(host, p, hl);
	host[hl] = '\0';
	if (colon[1] < '0' || colon[1] > '9')
		goto bad;
	errno = 0;
	v = strtoul(colon + 1, &end, 10);
	if (errno || *end || v > 65535)
		goto bad;
	*port = (unsigned)v;
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

int web_check_listen(const char *spec)
{
	char host[256];
	unsigned port;
	int br;

	return listen_split(spec, host, sizeof(host), &port, &br);
}

/* One listening socket on a.  v6only for an IPv6 address: 1 (only
 * IPv6), 0 (IPv4 too, as mapped addresses).  Returns it or -1 with
 * errno. */
static int listen_one(const struct sockaddr *a, socklen_t len, int v6only)
{
	int one = 1, fd, err;

	fd = socket(a->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/* restarts do not wait out TIME_WAIT */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (a->sa_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
			sizeof(v6only)) == -1) ||
	    bind(fd, a, len) == -1 || listen(fd, WEB_LISTEN_BACKLOG) == -1) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int web_listen_all(const char *spec, int *fds, size_t max)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char host[256], portstr[8];
	unsigned port;
	size_t n = 0;
	int bracketed, rc, err;

	if (listen_split(spec, host, sizeof(host), &port, &bracketed) == -1) {
		log_warnx("web: bad listen address '%s' (expected ADDR:PORT, "
			  "[IPV6]:PORT, :PORT or NAME:PORT)", spec ? spec : "");
		return -1;
	}
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (!*host || (bracketed && !strcmp(host, "::"))) {
		/* every address: one IPv6 socket that takes IPv4 too, or
		 * IPv4 alone on a host without IPv6 */
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6,
					   .sin6_port = htons((uint16_t)port),
					   .sin6_addr = IN6ADDR_ANY_INIT };
		struct sockaddr_in s4 = { .sin_family = AF_INET,
					  .sin_port = htons((uint16_t)port) };
		int fd = listen_one((struct sockaddr *)&s6, sizeof(s6), 0);

		if (fd == -1 && (errno == EAFNOSUPPORT ||
				 errno == EADDRNOTAVAIL) && !bracketed)
			fd = listen_one((struct sockaddr *)&s4, sizeof(s4), 0);
		if (fd == -1) {
			log_warn("web: cannot listen on %s", spec);
			return -1;
		}
		if (max < 1) {
			close(fd);
			errno = EOVERFLOW;
			return -1;
		}
		fds[0] = fd;
		return 1;
	}
	if (bracketed)
		hints.ai_family = AF_INET6;
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		log_warnx("web: cannot listen on %s: %s", spec,
			  rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		errno = rc == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd, dup = 0;

		/* a name can list one address twice (several socket types
		 * or a hosts file): bind each once */
		for (struct addrinfo *b = res; b != ai; b = b->ai_next)
			if (b->ai_addrlen == ai->ai_addrlen &&
			    !memcmp(b->ai_addr, ai->ai_addr, ai->ai_addrlen))
				dup = 1;
		if (dup || (ai->ai_family != AF_INET &&
			    ai->ai_family != AF_INET6))
			continue;
		if (n == max) {
			err = EOVERFLOW;
			log_warnx("web: %s names more than %zu addresses", spec,
				  max);
			goto fail;
		}
		fd = listen_one(ai->ai_addr, ai->ai_addrlen, 1);
		if (fd == -1) {
			err = errno;
			log_warn("web: cannot listen on %s", spec);
			goto fail;
		}
		fds[n++] = fd;
	}
	freeaddrinfo(res);
	if (n == 0) {
		log_warnx("web: %s resolves to no IPv4 or IPv6 address", spec);
		errno = EADDRNOTAVAIL;
		return -1;
	}
	return (int)n;
fail:
	freeaddrinfo(res);
	while (n)
		close(fds[--n]);
	errno = err;
	return -1;
}
