/*
 * net.c - how `natscope run` and `natscope serve` listen (cli.h): one or
 * more --listen, a bearer token from a file (reloaded at SIGHUP), paths
 * left open for probes and scrapers, and TLS.  The same flags mean the
 * same in both commands because they are parsed here once.
 */
#include "cli/cli.h"
#include "common/common.h"
#include "web/web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A whole file (PEM text), NUL-terminated, or NULL with errno (logged). */
static char *net_read_file(const char *path, const char *what)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0, got;

	if (!f) {
		log_warn("%s %s", what, path);
		return NULL;
	}
	do {
		if (len + 4096 + 1 > cap) {
			char *nb = realloc(buf, cap = cap ? 2 * cap : 8192);

			if (!nb) {
				log_warn("%s %s", what, path);
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		got = fread(buf + len, 1, 4096, f);
		len += got;
	} while (got == 4096 && len < (1u << 20));
	if (ferror(f) || len == 0 || len >= (1u << 20)) {
		log_warnx("%s %s: %s", what, path, ferror(f) ? "read error" :
			  len ? "larger than 1 MiB" : "empty");
		free(buf);
		fclose(f);
		errno = EINVAL;
		return NULL;
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

int cli_net_option(struct cli_net *n, int opt, const char *arg,
		   const char *cmd)
{
	switch (opt) {
	case CLI_NET_LISTEN:
		if (web_check_listen(arg) < 0) {
			fprintf(stderr, "natscope %s: --listen '%s': expected "
				"ADDR:PORT, [IPV6]:PORT, :PORT or NAME:PORT "
				"(e.g. 127.0.0.1:9628, [::]:9628, :9628, "
				"localhost:9628)\n", cmd, arg);
			return 2;
		}
		if (n->n_listen == CLI_LISTEN_MAX) {
			fprintf(stderr, "natscope %s: at most %d --listen\n",
				cmd, CLI_LISTEN_MAX);
			return 2;
		}
		n->listen[n->n_listen++] = arg;
		return 1;
	case CLI_NET_TOKEN:
		n->token_file = arg;
		return 1;
	case CLI_NET_OPEN: {
		char copy[64], *save = NULL, *p;

		snprintf(copy, sizeof(copy), "%s", arg);
		for (p = strtok_r(copy, ",", &save); p;
		     p = strtok_r(NULL, ",", &save)) {
			if (!strcmp(p, "/healthz") || !strcmp(p, "healthz"))
				n->open_paths |= WEB_OPEN_HEALTHZ;
			else if (!strcmp(p, "/metrics") ||
				 !strcmp(p, "metrics"))
				n->open_paths |= WEB_OPEN_METRICS;
			else {
				fprintf(stderr, "natscope %s: --auth-open "
					"'%s': expected /healthz, /metrics or "
					"both, comma-separated\n", cmd, arg);
				return 2;
			}
		}
		return 1;
	}
	case CLI_NET_CERT:
		n->tls_cert_file = arg;
		return 1;
	case CLI_NET_KEY:
		n->tls_key_file = arg;
		return 1;
	}
	return 0;
}

int cli_net_check(struct cli_net *n, const char *cmd)
{
	if (!n->n_listen)
		n->listen[n->n_listen++] = CLI_DEFAULT_LISTEN;
	if (!n->tls_cert_file != !n->tls_key_file) {
		fprintf(stderr, "natscope %s: --tls-cert and --tls-key go "
			"together\n", cmd);
		return 2;
	}
	if (n->open_paths && !n->token_file) {
		fprintf(stderr, "natscope %s: --auth-open needs "
			"--auth-token-file\n", cmd);
		return 2;
	}
	return 0;
}

int cli_net_load(struct cli_net *n)
{
	if (n->token_file && !(n->token = web_read_token_file(n->token_file)))
		return -1;
	if (n->tls_cert_file &&
	    (!(n->cert = net_read_file(n->tls_cert_file, "TLS certificate")) ||
	     !(n->key = net_read_file(n->tls_key_file, "TLS key"))))
		return -1;
	return 0;
}

int cli_net_listen(struct cli_net *n)
{
	for (size_t i = 0; i < n->n_listen; i++) {
		int got = web_listen_all(n->listen[i], n->fds + n->n_fds,
					 CLI_FDS_MAX - n->n_fds);

		if (got < 0) {
			log_warnx("cannot serve HTTP on %s", n->listen[i]);
			return -1;
		}
		n->n_fds += (size_t)got;
	}
	return 0;
}

int cli_net_start(struct cli_net *n, const struct web_config *base)
{
	struct web_config cfg = *base;

	cfg.token = n->token;
	cfg.open_paths = n->open_paths;
	cfg.tls_cert = n->cert;
	cfg.tls_key = n->key;
	for (size_t i = 0; i < n->n_fds; i++) {
		int fd = n->fds[i];

		n->fds[i] = -1; /* web_start() takes it, whatever happens */
		if (!(n->webs[n->n_webs] = web_start(fd, &cfg)))
			return -1;
		n->n_webs++;
	}
	return 0;
}

int cli_net_reload(struct cli_net *n)
{
	char *tok;

	if (!n->token_file)
		return 0;
	if (!(tok = web_read_token_file(n->token_file))) {
		log_warnx("SIGHUP: kept the token in use (%s could not be "
			  "read)", n->token_file);
		return -1;
	}
	for (size_t i = 0; i < n->n_webs; i++)
		if (web_set_token(n->webs[i], tok) < 0) {
			free(tok);
			return -1;
		}
	free(n->token);
	n->token = tok;
	log_info("SIGHUP: bearer token reloaded from %s", n->token_file);
	return 0;
}

void cli_net_stop(struct cli_net *n)
{
	for (size_t i = 0; i < n->n_webs; i++)
		web_stop(n->webs[i]);
	n->n_webs = 0;
	for (size_t i = 0; i < n->n_fds; i++)
		if (n->fds[i] >= 0)
			close(n->fds[i]);
	n->n_fds = 0;
	free(n->token);
	free(n->cert);
	if (n->key) /* a private key: not left in freed memory */
		explicit_bzero(n->key, strlen(n->key));
	free(n->key);
	n->token = n->cert = n->key = NULL;
}
