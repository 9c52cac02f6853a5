/*
 * cli.h - the natscope command's subcommands.  Each takes the arguments
 * after its name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 runtime failure, 2 usage error.
 */
#ifndef NATSCOPE_CLI_H
#define NATSCOPE_CLI_H

/* natscope run: follow conntrack, keep the database, serve the API. */
int cli_run(int argc, char **argv);

/* Parses a byte size with an optional K, M or G suffix (powers of 1024).
 * Returns 0, or -1 with EINVAL (garbage) or ERANGE (too large). */
int cli_parse_size(const char *text, unsigned long long *out);

#endif
