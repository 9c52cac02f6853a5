/*
 * kstat.c - conntrack statistics, sysctls and process figures from /proc.
 */
#include "collector/kstat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file into buf (NUL-terminated).  -1 if unreadable. */
static int kstat_slurp(const char *path, char *buf, size_t size)
{
	ssize_t n, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got < size - 1 &&
	       (n = read(fd, buf + got, size - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	buf[got] = '\0';
	return got > 0 ? 0 : -1;
}

int kstat_read_stat(const char *path, struct kstat *ks)
{
	/* One line per CPU: 8 KB held 51 of them, and gateways have more.
	 * The whole file is read, growing the buffer. */
	size_t cap = 16384, got = 0;
	char *buf = malloc(cap), *p;
	ssize_t n;
	int fd, rc, err;

	if (!buf)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -1;
	}
	for (;;) {
		if (got + 1 == cap) {
			if (cap >= (64u << 20) || !(p = realloc(buf, cap * 2))) {
				err = cap >= (64u << 20) ? EFBIG : ENOMEM;
				goto fail;
			}
			buf = p;
			cap *= 2;
		}
		n = read(fd, buf + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	rc = kstat_parse_stat(buf, ks);
	err = errno;
	free(buf);
	errno = err;
	return rc;
fail:
	close(fd);
	free(buf);
	errno = err;
	return -1;
}

static int64_t kstat_read_int(const char *path)
{
	char buf[64], *end;
	long long v;

	if (kstat_slurp(path, buf, sizeof(buf)) < 0)
		return -1;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || end == buf)
		return -1;
	return v;
}

int kstat_parse_port_range(const char *text, int32_t *lo, int32_t *hi)
{
	long a, b;
	char *end;

	errno = 0;
	a = strtol(text, &end, 10);
	if (errno || end == text)
		goto bad;
	text = end;
	b = strtol(text, &end, 10);
	if (errno || end == text || a < 0 || b > 65535 || a > b)
		goto bad;
	*lo = (int32_t)a;
	*hi = (int32_t)b;
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

int kstat_parse_stat(const char *text, struct kstat *ks)
{
	static const char *want[] = { "insert_failed", "drop", "early_drop",
				      "clashres" };
	int col[4] = { -1, -1, -1, -1 };
	int64_t sum[4] = { 0, 0, 0, 0 };
	const char *line = text, *nl;
	int ncols = 0, rows = 0;

	/* header: column names separated by blanks */
	nl = strchr(line, '\n');
	if (!nl)
		goto bad;
	for (const char *p = line; p < nl;) {
		size_t len;

		while (p < nl && (*p == ' ' || *p == '\t'))
			p++;
		if (p >= nl)
			break;
		len = strcspn(p, " \t\n");
		for (int w = 0; w < 4; w++)
			if (strlen(want[w]) == len && strncmp(p, want[w], len) == 0)
				col[w] = ncols;
		ncols++;
		p += len;
	}
	if (ncols == 0 || col[0] < 0 || col[1] < 0 || col[2] < 0)
		goto bad;
	/* one row of hex numbers per CPU */
	for (line = nl + 1; *line; line = nl ? nl + 1 : line + strlen(line)) {
		const char *p = line;
		int c = 0;

		nl = strchr(line, '\n');
		while (*p && *p != '\n') {
			char *end;
			unsigned long long v;

			while (*p == ' ' || *p == '\t')
				p++;
			if (!*p || *p == '\n')
				break;
			errno = 0;
			v = strtoull(p, &end, 16);
			if (errno || end == p)
				goto bad;
			for (int w = 0; w < 4; w++)
				if (col[w] == c)
					sum[w] += (int64_t)v;
			c++;
			p = end;
		}
		if (c == 0)
			continue; /* blank line */
		if (c != ncols)
			goto bad;
		rows++;
	}
	if (rows == 0)
		goto bad;
	ks->insert_failed = sum[0];
	ks->drop = sum[1];
	ks->early_drop = sum[2];
	ks->clash_resolve = col[3] >= 0 ? sum[3] : -1;
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

void kstat_read(struct kstat *ks)
{
	char buf[8192];
	struct rusage ru;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long size, resident;

	ks->count = kstat_read_int("/proc/sys/net/netfilter/nf_conntrack_count");
	ks->max = kstat_read_int("/proc/sys/net/netfilter/nf_conntrack_max");
	ks->insert_failed = ks->drop = ks->early_drop = ks->clash_resolve = -1;
	kstat_read_stat("/proc/net/stat/nf_conntrack", ks);
	ks->port_lo = ks->port_hi = -1;
	if (kstat_slurp("/proc/sys/net/ipv4/ip_local_port_range", buf,
			sizeof(buf)) == 0)
		kstat_parse_port_range(buf, &ks->port_lo, &ks->port_hi);
	ks->tcp_tw_reuse = (int32_t)kstat_read_int("/proc/sys/net/ipv4/tcp_tw_reuse");
	ks->tcp_fin_timeout =
		(int32_t)kstat_read_int("/proc/sys/net/ipv4/tcp_fin_timeout");
	ks->tcp_timeout_time_wait = (int32_t)kstat_read_int(
		"/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait");
	ks->events = (int32_t)kstat_read_int(
		"/proc/sys/net/netfilter/nf_conntrack_events");

	ks->rss_bytes = 0;
	if (kstat_slurp("/proc/self/statm", buf, sizeof(buf)) == 0 &&
	    sscanf(buf, "%llu %llu", &size, &resident) == 2 && page > 0)
		ks->rss_bytes = resident * (unsigned long long)page;
	ks->cpu_seconds = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		ks->cpu_seconds = (double)ru.ru_utime.tv_sec +
				  (double)ru.ru_stime.tv_sec +
				  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
