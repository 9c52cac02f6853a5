/*
 * config.c - a command's settings from three places, with one precedence
 * (cli.h, cli_config()): the command line, then NATSCOPE_* environment
 * variables (containers), then a configuration file (--config FILE or
 * NATSCOPE_CONFIG), then the defaults.  Whatever comes from the
 * environment or the file becomes ordinary flags in front of the command
 * line's, so every value goes through the command's own parser and its
 * messages.
 *
 * The file: one setting a line, "name = value" (or "name value"), the
 * names of the long flags without their dashes, '#' starts a comment;
 * "listen" and "local" may repeat; a flag without a value takes true/false.
 * The environment: NATSCOPE_ and the name in capitals with '_' for '-'
 * (NATSCOPE_DB, NATSCOPE_AUTH_TOKEN_FILE); repeatable ones take values
 * separated by spaces.  A name the command does not know is an error in
 * the file (FILE:LINE) and ignored in the environment (other programs'
 * variables may share the prefix).
 */
#include "cli/cli.h"
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_ARGS 256

static int cfg_repeatable(const char *name)
{
	return !strcmp(name, "listen") || !strcmp(name, "local");
}

/* The environment variable of setting name: NATSCOPE_ and the name in
 * capitals, '_' for '-'. */
static void cfg_env_name(const char *name, char *env, size_t n)
{
	snprintf(env, n, "NATSCOPE_%s", name);
	for (char *p = env; *p; p++)
		*p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

/* Whether the command line gives --name (or --name=...). */
static int cfg_on_command_line(int argc, char **argv, const char *name)
{
	size_t n = strlen(name);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n) &&
		    (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
			return 1;
	}
	return 0;
}

/* Appends --name[=value] to c; a flag without a value wants a boolean. */
static int cfg_add(struct cli_config *c, const struct option *o,
		   const char *value, const char *where)
{
	char *arg;

	if (c->n + 1 >= CFG_MAX_ARGS) {
		fprintf(stderr, "natscope: %s: too many settings\n", where);
		return -1;
	}
	if (o->has_arg == no_argument) {
		if (!strcmp(value, "true") || !strcmp(value, "yes") ||
		    !strcmp(value, "1"))
			value = NULL;
		else if (!strcmp(value, "false") || !strcmp(value, "no") ||
			 !strcmp(value, "0"))
			return 0;
		else {
			fprintf(stderr, "natscope: %s: %s takes true or false, "
				"not '%s'\n", where, o->name, value);
			return -1;
		}
	}
	if (asprintf(&arg, value ? "--%s=%s" : "--%s", o->name, value) < 0) {
		fprintf(stderr, "natscope: out of memory\n");
		return -1;
	}
	c->args[c->n++] = arg;
	return 0;
}

/* The option of opts named name, or NULL. */
static const struct option *cfg_find(const struct option *opts,
				     const char *name)
{
	for (; opts->name; opts++)
		if (!strcmp(opts->name, name) && strcmp(name, "help") &&
		    strcmp(name, "config"))
			return opts;
	return NULL;
}

/* The file's settings, each as "name\0value" with its line, in order. */
struct cfg_line {
	char *name, *value;
	unsigned line;
};

static int cfg_read_file(const char *path, const struct option *opts,
			 struct cfg_line **out, size_t *n)
{
	FILE *f = fopen(path, "re");
	char buf[4096];
	unsigned line = 0;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!f) {
		fprintf(stderr, "natscope: --config %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	while (fgets(buf, sizeof(buf), f)) {
		char *p = buf, *name, *value, *e;

		line++;
		if ((e = strchr(p, '#')))
			*e = '\0';
		while (isspace((unsigned char)*p))
			p++;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (!*p)
			continue;
		name = p;
		p += strcspn(p, " \t=");
		if (*p) {
			*p++ = '\0';
			while (*p == ' ' || *p == '\t' || *p == '=')
				p++;
		}
		value = p;
		if (!cfg_find(opts, name)) {
			fprintf(stderr, "natscope: %s:%u: unknown setting '%s'\n",
				path, line, name);
			goto fail;
		}
		if (*n == cap) {
			struct cfg_line *nv = realloc(*out, (cap = cap ? 2 * cap
							       : 16) *
							  sizeof(*nv));

			if (!nv)
				goto fail;
			*out = nv;
		}
		(*out)[*n].name = strdup(name);
		(*out)[*n].value = strdup(*value ? value : "true");
		(*out)[*n].line = line;
		if (!(*out)[*n].name || !(*out)[*n].value) {
			free((*out)[*n].name);
			free((*out)[*n].value);
			goto fail;
		}
		(*n)++;
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	for (size_t i = 0; i < *n; i++) {
		free((*out)[i].name);
		free((*out)[i].value);
	}
	free(*out);
	*out = NULL;
	*n = 0;
	return -1;
}

int cli_config(struct cli_config *c, const struct option *opts, int *argc,
	       char ***argv)
{
	const char *path = getenv("NATSCOPE_CONFIG");
	struct cfg_line *file = NULL;
	size_t nfile = 0;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if (!(c->args = calloc(CFG_MAX_ARGS, sizeof(*c->args))))
		return -1;
	/* --config FILE is taken out of the command line */
	c->argv = calloc((size_t)*argc + CFG_MAX_ARGS + 1, sizeof(*c->argv));
	if (!c->argv)
		goto out;
	c->argv[c->argc++] = (*argv)[0];
	for (int i = 1; i < *argc; i++) {
		if (!strcmp((*argv)[i], "--config") && i + 1 < *argc) {
			path = (*argv)[++i];
			continue;
		}
		if (!strncmp((*argv)[i], "--config=", 9)) {
			path = (*argv)[i] + 9;
			continue;
		}
	}
	if (path && *path && cfg_read_file(path, opts, &file, &nfile) < 0)
		goto out;
	c->path = path && *path ? path : NULL;
	c->orig_argc = *argc;
	c->orig_argv = *argv;
	for (const struct option *o = opts; o->name; o++) {
		char env[80], *v, where[128];

		if (!cfg_find(opts, o->name) ||
		    cfg_on_command_line(*argc, *argv, o->name))
			continue;
		cfg_env_name(o->name, env, sizeof(env));
		if ((v = getenv(env)) && *v) {
			char *copy = strdup(v), *save = NULL, *tok;

			if (!copy)
				goto out;
			snprintf(where, sizeof(where), "%s", env);
			if (!cfg_repeatable(o->name)) {
				rc = cfg_add(c, o, copy, where);
				free(copy);
				if (rc < 0)
					goto out;
				rc = -1;
				continue;
			}
			for (tok = strtok_r(copy, " \t", &save); tok;
			     tok = strtok_r(NULL, " \t", &save))
				if (cfg_add(c, o, tok, where) < 0) {
					free(copy);
					goto out;
				}
			free(copy);
			continue;
		}
		for (size_t i = 0; i < nfile; i++) {
			if (strcmp(file[i].name, o->name))
				continue;
			snprintf(where, sizeof(where), "%s:%u", path,
				 file[i].line);
			/* (of a setting given twice, getopt keeps the
			 * later line) */
			if (cfg_add(c, o, file[i].value, where) < 0)
				goto out;
		}
	}
	for (size_t i = 0; i < c->n; i++)
		c->argv[c->argc++] = c->args[i];
	for (int i = 1; i < *argc; i++) {
		if (!strcmp((*argv)[i], "--config") && i + 1 < *argc) {
			i++;
			continue;
		}
		if (!strncmp((*argv)[i], "--config=", 9))
			continue;
		c->argv[c->argc++] = (*argv)[i];
	}
	c->argv[c->argc] = NULL;
	*argc = c->argc;
	*argv = c->argv;
	rc = 0;
out:
	for (size_t i = 0; i < nfile; i++) {
		free(file[i].name);
		free(file[i].value);
	}
	free(file);
	if (rc < 0)
		cli_config_free(c);
	return rc;
}

void cli_config_free(struct cli_config *c)
{
	for (size_t i = 0; c->args && i < c->n; i++)
		free(c->args[i]);
	free(c->args);
	free(c->argv);
	memset(c, 0, sizeof(*c));
}

int cli_log_option(int opt, const char *arg, const char *cmd)
{
	enum ns_log_format f;
	enum ns_log_level l;

	switch (opt) {
	case CLI_LOG_FORMAT:
		if (log_parse_format(arg, &f) < 0) {
			fprintf(stderr, "natscope %s: --log-format '%s': "
				"expected text or json\n", cmd, arg);
			return 2;
		}
		log_set_format(f);
		return 1;
	case CLI_LOG_LEVEL:
		if (log_parse_level(arg, &l) < 0) {
			fprintf(stderr, "natscope %s: --log-level '%s': "
				"expected error, warning, info or debug\n",
				cmd, arg);
			return 2;
		}
		log_set_level(l);
		return 1;
	}
	return 0;
}

int cli_config_reread(const struct cli_config *c, const struct option *opts,
		      const char *name, char *out, size_t n)
{
	struct cfg_line *file;
	size_t nfile;
	char env[80];
	int found = 0;

	cfg_env_name(name, env, sizeof(env));
	if (!c->path || (getenv(env) && *getenv(env)) ||
	    cfg_on_command_line(c->orig_argc, c->orig_argv, name))
		return 0;
	if (cfg_read_file(c->path, opts, &file, &nfile) < 0)
		return -1;
	for (size_t i = 0; i < nfile; i++) {
		if (!strcmp(file[i].name, name)) {
			snprintf(out, n, "%s", file[i].value);
			found = 1; /* the last line wins, as at start */
		}
		free(file[i].name);
		free(file[i].value);
	}
	free(file);
	return found;
}
