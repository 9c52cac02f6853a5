/*
 * privsep.c - the privileges natscope run keeps, and the ones it gives up
 * (libcap-ng).
 *
 * natscope run needs CAP_NET_ADMIN for conntrack (subscribing to its
 * events, dumps, GETs, SO_RCVBUFFORCE) and, at start only, whatever binding
 * its HTTP port takes.  After the listening socket is bound, the collector
 * process keeps CAP_NET_ADMIN and nothing else; the web process holds no
 * capability at all.  Capabilities belong to threads, not processes: these
 * functions change the calling thread only, so they must run before the
 * process starts any thread (threads inherit what their creator holds).
 */
#include "cli/cli.h"
#include "common/common.h"

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_priv_user_lookup(const char *name, struct cli_priv_user *u)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int e;

	memset(u, 0, sizeof(*u));
	if (!name || !*name || strlen(name) >= sizeof(u->name)) {
		errno = EINVAL;
		return -1;
	}
	e = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (e != 0 || !res) {
		errno = e ? e : ENOENT;
		return -1;
	}
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	snprintf(u->name, sizeof(u->name), "%s", name);
	return 0;
}

int cli_priv_have_net_admin(void)
{
	if (capng_get_caps_process() != 0)
		return 0;
	return capng_have_capability(CAPNG_PERMITTED, CAP_NET_ADMIN) ? 1 : 0;
}

/* Gives one file to u: reached through an O_PATH descriptor, which opens
 * nothing (no device or FIFO side effect) and does not follow a symbolic
 * link (the directory may be u's, who could plant one); only a regular
 * file with one link is changed, through that descriptor.  A missing
 * file is fine. */
static int priv_chown_one(const char *path, const struct cli_priv_user *u)
{
	struct stat st;
	int saved, fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		log_warn("--user %s: %s", u->name, path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		log_warn("--user %s: %s", u->name, path);
		goto err;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		log_warnx("--user %s: %s is not a plain file with one link: "
			  "not giving it to that user", u->name, path);
		errno = EPERM;
		goto err;
	}
	if ((st.st_uid != u->uid || st.st_gid != u->gid) &&
	    fchownat(fd, "", u->uid, u->gid, AT_EMPTY_PATH) < 0) {
		log_warn("--user %s: cannot give %s to that user", u->name,
			 path);
		goto err;
	}
	close(fd);
	return 0;
err:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int cli_priv_chown_db(const char *path, const struct cli_priv_user *u,
		      int *made)
{
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
	char name[4096];
	int fd, saved;

	*made = 0;
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		if (snprintf(name, sizeof(name), "%s%s", path, suffix[i]) >=
		    (int)sizeof(name)) {
			errno = ENAMETOOLONG;
			log_warn("--user %s: %s", u->name, path);
			return -1;
		}
		if (priv_chown_one(name, u) < 0)
			return -1;
	}
	/* No database yet: an empty file of u's, so that SQLite, running
	 * as root when it opens it, makes its -wal and -shm u's too. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0644);
	if (fd < 0)
		return 0; /* it exists, or store_open() will say why not */
	*made = 1;
	if (fchown(fd, u->uid, u->gid) < 0) {
		saved = errno;
		log_warn("--user %s: cannot give %s to that user", u->name,
			 path);
		close(fd);
		unlink(path);
		*made = 0;
		errno = saved;
		return -1;
	}
	close(fd);
	return 0;
}

void cli_priv_unmake_db(const char *path)
{
	static const char *const suffix[] = { "-wal", "-shm", "" };
	char name[4096];

	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		if (snprintf(name, sizeof(name), "%s%s", path, suffix[i]) >=
		    (int)sizeof(name))
			continue;
		if (unlink(name) < 0 && errno != ENOENT)
			log_warn("cannot remove %s, made for this run", name);
	}
}

/* Whether the kernel says this thread holds no capability but keep (-1:
 * none) in its effective, permitted and inheritable sets. */
static int priv_holds_only(int keep)
{
	static const capng_type_t sets[] = { CAPNG_EFFECTIVE, CAPNG_PERMITTED,
					     CAPNG_INHERITABLE };

	if (capng_get_caps_process() != 0)
		return 0;
	for (unsigned c = 0; c <= CAP_LAST_CAP; c++)
		for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
			if (capng_have_capability(sets[i], c) &&
			    ((int)c != keep || sets[i] == CAPNG_INHERITABLE))
				return 0;
	return keep < 0 || (capng_have_capability(CAPNG_EFFECTIVE,
						  (unsigned)keep) &&
			    capng_have_capability(CAPNG_PERMITTED,
						  (unsigned)keep));
}

/* The bounding set can only be cleared with CAP_SETPCAP (root has it;
 * a service manager that starts natscope as a user with CAP_NET_ADMIN
 * alone sets the bounding set itself). */
static int priv_can_clear_bounding(void)
{
	return capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
}

int cli_priv_keep_net_admin(const struct cli_priv_user *u)
{
	int bounds, rc;

	if (capng_get_caps_process() != 0) {
		log_warnx("cannot read this process's capabilities");
		errno = EIO;
		return -1;
	}
	bounds = priv_can_clear_bounding();
	if (u && !capng_have_capability(CAPNG_EFFECTIVE, CAP_SETUID)) {
		log_warnx("--user %s: switching user needs root (CAP_SETUID "
			  "and CAP_SETGID)", u->name);
		errno = EPERM;
		return -1;
	}
	capng_clear(CAPNG_SELECT_ALL);
	capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED,
		     CAP_NET_ADMIN);
	if (u) {
		/* keeps CAP_NET_ADMIN across setresuid (PR_SET_KEEPCAPS),
		 * then applies the set above; no supplementary group stays */
		rc = capng_change_id((int)u->uid, (int)u->gid,
				     CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_AMBIENT |
					     (bounds ? CAPNG_CLEAR_BOUNDING : 0));
		if (rc != 0) {
			log_warnx("--user %s: cannot switch to uid %u gid %u "
				  "keeping CAP_NET_ADMIN (libcap-ng %d)",
				  u->name, (unsigned)u->uid, (unsigned)u->gid,
				  rc);
			errno = EPERM;
			return -1;
		}
	} else if (capng_apply(bounds ? CAPNG_SELECT_ALL :
					CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT) !=
		   0) {
		log_warnx("cannot drop capabilities other than CAP_NET_ADMIN");
		errno = EPERM;
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_warn("no_new_privs");
		return -1;
	}
	/* check what the kernel now says, not what was asked */
	if (!priv_holds_only(CAP_NET_ADMIN)) {
		log_warnx("the collector's capabilities are not CAP_NET_ADMIN "
			  "alone after dropping the others");
		errno = EPERM;
		return -1;
	}
	return 0;
}

int cli_priv_drop_all(void)
{
	int bounds;

	if (capng_get_caps_process() != 0) {
		log_warnx("cannot read this process's capabilities");
		errno = EIO;
		return -1;
	}
	bounds = priv_can_clear_bounding();
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_apply(bounds ? CAPNG_SELECT_ALL :
				 CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT) != 0) {
		log_warnx("cannot drop every capability");
		errno = EPERM;
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_warn("no_new_privs");
		return -1;
	}
	if (!priv_holds_only(-1)) {
		log_warnx("capabilities are left after dropping them all");
		errno = EPERM;
		return -1;
	}
	return 0;
}
