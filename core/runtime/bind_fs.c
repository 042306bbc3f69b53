/* bind_fs.c - the `polaris.fs` table (FileSystemAccess): read, write, list,
 * stat, remove, confined to the manifest's sandbox.allowed_paths and never
 * under sandbox.forbidden_paths.
 *
 * Confinement is done by the kernel: each path is opened with openat2()
 * and RESOLVE_BENEATH relative to the allowed root it names, so ".." and
 * symlinks cannot leave the root, and there is no window between a check
 * and the open. The opened file's real path (/proc/self/fd) is then checked
 * against forbidden_paths. Misuse raises; a refused or failed operation
 * returns nil, message, errno (liolib style). */
#include "runtime/plugin.h"
#include "lib/fs_beneath.h"
#include "lib/targz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX_DEFAULT (1u << 20)

static struct plugin *self(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int fail(lua_State *L, int err, const char *fmt, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, fmt, path, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

static bool under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/' || n == 1);
}

/* openat2 beneath dirfd, or the walk where openat2 is missing. */
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
    if (fd < 0 && (errno == ENOSYS || errno == EPERM))   /* no openat2, or seccomp hides it */
        fd = fs_walk_beneath(dirfd, rel, flags, (flags & O_CREAT) ? mode : 0);
    return fd;
}

static int real_path_of(int fd, char *real, size_t n)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t rl = readlink(link, real, n - 1);
    if (rl < 0)
        return -1;
    real[rl] = '\0';
    return 0;
}

static bool is_forbidden(struct plugin *p, const char *real)
{
    for (size_t k = 0; k < p->nforbidden; k++) {
        char froot[PATH_MAX];
        const char *f = realpath(p->forbidden_paths[k], froot) ? froot : p->forbidden_paths[k];
        if (under(real, f))
            return true;
    }
    return false;
}

/* Whether name, about to be made in the directory dirfd, would be under a
 * forbidden path: asked before anything is created. 0, or -1 with errno
 * EACCES and *why. */
static int check_new_name(struct plugin *p, int dirfd, const char *name, const char **why)
{
    char real[PATH_MAX];
    if (real_path_of(dirfd, real, sizeof real) < 0) {
        errno = EACCES;
        *why = "permission denied: %s: cannot confirm where it leads (%s)";
        return -1;
    }
    size_t n = strlen(real);
    if (snprintf(real + n, sizeof real - n, "%s%s", n > 1 ? "/" : "", name) >= (int)(sizeof real - n)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (is_forbidden(p, real)) {
        errno = EACCES;
        *why = "permission denied: %s is under a forbidden path (%s)";
        return -1;
    }
    return 0;
}

/* O_CREAT for a name that does not exist yet: its directory is opened
 * beneath the root, the new name checked, then made with O_EXCL (so it is
 * that name, not whatever a symlink planted since points to). */
static int create_beneath(struct plugin *p, int rootfd, const char *rel, int flags, mode_t mode,
                          const char **why)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(rel, '/');
    const char *name = slash ? slash + 1 : rel;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        errno = EINVAL;
        return -1;
    }
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - rel) : 1, slash ? rel : ".");
    int dfd = open_beneath(rootfd, parent[0] ? parent : ".", O_PATH | O_DIRECTORY, 0);
    if (dfd < 0)
        return -1;
    if (check_new_name(p, dfd, name, why) < 0) {
        int e = errno;
        close(dfd);
        errno = e;
        return -1;
    }
    int fd = openat(dfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = errno;
    close(dfd);
    errno = e;
    return fd;
}

/* Opens path confined to an allowed root. Returns an fd or -1 with errno
 * set and *why describing a policy refusal (errno EACCES). Nothing is
 * created or truncated before the policy has said yes: an existing file is
 * opened as it is and checked, then truncated; a new one is checked by its
 * name, then created. */
static int confined_open(struct plugin *p, const char *path, int flags, mode_t mode, const char **why)
{
    *why = NULL;
    if (path[0] != '/') {
        *why = "permission denied: %s: paths must be absolute (%s)";
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < p->nallowed; i++) {
        const char *root = p->allowed_paths[i];
        if (!under(path, root))
            continue;
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            n--;
        const char *rel = path + n;
        while (*rel == '/')
            rel++;
        if (!*rel)
            rel = ".";
        int dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return -1;
        int fd = open_beneath(dirfd, rel, flags & ~(O_CREAT | O_TRUNC | O_EXCL), 0);
        bool created = false;
        for (int tries = 0; fd < 0 && errno == ENOENT && (flags & O_CREAT) && tries < 3; tries++) {
            fd = create_beneath(p, dirfd, rel, flags & ~O_TRUNC, mode, why);
            created = fd >= 0;
            if (fd < 0 && errno == EEXIST)        /* made meanwhile: open it as it is */
                fd = open_beneath(dirfd, rel, flags & ~(O_CREAT | O_TRUNC | O_EXCL), 0);
        }
        int saved = errno;
        close(dirfd);
        if (fd < 0) {
            if (saved == EXDEV) {
                *why = "permission denied: %s leaves its allowed path (%s)";
                saved = EACCES;
            }
            errno = saved;
            return -1;
        }
        char real[PATH_MAX];
        if (real_path_of(fd, real, sizeof real) < 0) {
            close(fd);
            errno = EACCES;
            *why = "permission denied: %s: cannot confirm where it leads (%s)";
            return -1;
        }
        if (is_forbidden(p, real)) {
            close(fd);
            errno = EACCES;
            *why = "permission denied: %s is under a forbidden path (%s)";
            return -1;
        }
        if ((flags & O_TRUNC) && !created && ftruncate(fd, 0) < 0) {
            saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        return fd;
    }
    errno = EACCES;
    *why = "permission denied: %s is outside sandbox.allowed_paths (%s)";
    return -1;
}

static void need_fs(lua_State *L, struct plugin *p)
{
    if (!(p->perms & PERM_FS))
        sandbox_raise(L, "permission denied: FileSystemAccess (add it to the manifest's permissions)");
}

static int open_or_fail(lua_State *L, struct plugin *p, const char *path, int flags, mode_t mode, int *fd)
{
    const char *why;
    *fd = confined_open(p, path, flags, mode, &why);
    if (*fd >= 0)
        return 0;
    return fail(L, errno, why ? why : "%s: %s", path);
}

/* fs.read(path [, max_bytes [, {tail = true}]]) -> string | nil, msg, errno
 * With tail, the last max_bytes of the file (a log's newest lines). */
static int l_read(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, READ_MAX_DEFAULT);
    luaL_argcheck(L, max > 0, 2, "max_bytes must be positive");
    bool tail = false;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "tail");
        tail = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    int fd, n = open_or_fail(L, p, path, O_RDONLY, 0, &fd);
    if (n)
        return n;
    struct stat st;
    if (tail && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > max)
        lseek(fd, st.st_size - max, SEEK_SET);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer total = 0;
    while (total < max) {
        size_t want = (size_t)(max - total) < LUAL_BUFFERSIZE ? (size_t)(max - total) : LUAL_BUFFERSIZE;
        char *dst = luaL_prepbuffsize(&b, want);
        ssize_t r = read(fd, dst, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return fail(L, e, "%s: %s", path);
        }
        if (r == 0)
            break;
        luaL_addsize(&b, (size_t)r);
        total += r;
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
}

/* fs.write(path, data [, {append = true, mode = 0640}]) -> true | nil, msg, errno */
static int l_write(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int flags = O_WRONLY | O_CREAT | O_TRUNC;
    mode_t mode = 0640;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "append");
        if (lua_toboolean(L, -1))
            flags = O_WRONLY | O_CREAT | O_APPEND;
        lua_getfield(L, 3, "mode");
        if (lua_isinteger(L, -1))
            mode = (mode_t)(lua_tointeger(L, -1) & 0777);
        lua_pop(L, 2);
    }
    int fd, n = open_or_fail(L, p, path, flags, mode, &fd);
    if (n)
        return n;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return fail(L, e, "%s: %s", path);
        }
        off += (size_t)w;
    }
    if (close(fd) < 0)
        return fail(L, errno, "%s: %s", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.list(dir) -> {names...} | nil, msg, errno */
static int l_list(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    int fd, n = open_or_fail(L, p, path, O_RDONLY | O_DIRECTORY, 0, &fd);
    if (n)
        return n;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int e = errno;
        close(fd);
        return fail(L, e, "%s: %s", path);
    }
    lua_newtable(L);
    int i = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        lua_pushstring(L, de->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(dir);
    return 1;
}

/* fs.stat(path) -> {type, size, mtime, mode} | nil, msg, errno */
static int l_stat(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    int fd, n = open_or_fail(L, p, path, O_PATH, 0, &fd);
    if (n)
        return n;
    struct stat st;
    int rc = fstat(fd, &st);
    int e = errno;
    close(fd);
    if (rc < 0)
        return fail(L, e, "%s: %s", path);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "file" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
    lua_setfield(L, -2, "mtime_ms");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    return 1;
}

/* fs.remove(path) -> true | nil, msg, errno (files only) */
static int l_remove(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!slash || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return fail(L, EINVAL, "%s: not a file path (%s)", path);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
    int fd, n = open_or_fail(L, p, parent, O_PATH | O_DIRECTORY, 0, &fd);
    if (n)
        return n;
    /* the file itself must be allowed too (forbidden paths inside a root) */
    int ffd;
    n = open_or_fail(L, p, path, O_PATH | O_NOFOLLOW, 0, &ffd);
    if (n) {
        close(fd);
        return n;
    }
    close(ffd);
    int rc = unlinkat(fd, name, 0);
    int e = errno;
    close(fd);
    if (rc < 0)
        return fail(L, e, "%s: %s", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* Opens the directory holding path (confined) and points *name at the last
 * component. Returns 0 or the fail() count. */
static int open_parent(lua_State *L, struct plugin *p, const char *path, int *dirfd, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    if (!slash || !**name || strcmp(*name, ".") == 0 || strcmp(*name, "..") == 0)
        return fail(L, EINVAL, "%s: not a file path (%s)", path);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - path) ? (int)(slash - path) : 1, path);
    return open_or_fail(L, p, parent, O_PATH | O_DIRECTORY, 0, dirfd);
}

/* An allowed root itself may be created, with its missing parents: the
 * grant names that very path (a capture dir on a fresh machine). */
static bool is_allowed_root(struct plugin *p, const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    for (size_t i = 0; i < p->nallowed; i++) {
        const char *r = p->allowed_paths[i];
        size_t m = strlen(r);
        while (m > 1 && r[m - 1] == '/')
            m--;
        if (m == n && strncmp(r, path, n) == 0)
            return true;
    }
    return false;
}

static int mkdir_root(lua_State *L, struct plugin *p, const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp || strstr(tmp, "/../") || strstr(tmp, "/./"))
        return fail(L, EINVAL, "%s: %s", path);
    if (is_forbidden(p, path))
        return fail(L, EACCES, "permission denied: %s is under a forbidden path (%s)", path);
    for (char *s = tmp + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return fail(L, errno, "%s: %s", tmp);
        if (!c)
            break;
        *s = '/';
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return fail(L, ENOTDIR, "%s: %s", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.mkdir(path [, mode]) -> true | nil, msg, errno; an existing directory
 * is success. The parent must exist, unless path is an allowed root. */
static int l_mkdir(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = (mode_t)(luaL_optinteger(L, 2, 0750) & 0777);
    if (path[0] == '/' && is_allowed_root(p, path))
        return mkdir_root(L, p, path, mode);
    const char *name;
    int dirfd, n = open_parent(L, p, path, &dirfd, &name);
    if (n)
        return n;
    const char *why = NULL;
    if (check_new_name(p, dirfd, name, &why) < 0) {
        int e = errno;
        close(dirfd);
        return fail(L, e, why ? why : "%s: %s", path);
    }
    int rc = mkdirat(dirfd, name, mode);
    int e = errno;
    struct stat st;
    if (rc < 0 && e == EEXIST && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        rc = 0;
    close(dirfd);
    if (rc < 0)
        return fail(L, e, "%s: %s", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.archive(path, {{name = "a.txt", data = "..."}, ...}) -> true | nil, msg, errno
 * Writes a .tar.gz atomically: a hidden temporary beside it, renamed into
 * place once complete, so a reader never sees half an archive. */
static int l_archive(lua_State *L)
{
    struct plugin *p = self(L);
    need_fs(L, p);
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    if (n > 4096)
        return luaL_error(L, "polaris.fs.archive: at most 4096 entries");
    struct targz_entry *v = lua_newuserdatauv(L, (n ? n : 1) * sizeof *v, 0);
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
            return luaL_error(L, "usage: polaris.fs.archive(path, {{name = s, data = s}, ...}): entry %d", (int)i + 1);
        lua_getfield(L, -1, "name");
        lua_getfield(L, -2, "data");
        v[i].name = lua_tostring(L, -2);
        v[i].data = lua_tolstring(L, -1, &v[i].len);
        if (!v[i].name || !v[i].data)
            return luaL_error(L, "polaris.fs.archive: entry %d needs string name and data", (int)i + 1);
        const char *why = targz_bad_name(v[i].name);
        if (why)
            return luaL_error(L, "polaris.fs.archive: entry '%s': %s", v[i].name, why);
        v[i].mode = 0644;
        lua_pop(L, 3);                       /* the strings stay alive in the table */
    }
    const char *name;
    int dirfd, rc = open_parent(L, p, path, &dirfd, &name);
    if (rc)
        return rc;
    char tmp[NAME_MAX + 1];
    if ((size_t)snprintf(tmp, sizeof tmp, ".%s.%d.tmp", name, (int)getpid()) >= sizeof tmp) {
        close(dirfd);
        return fail(L, ENAMETOOLONG, "%s: %s", path);
    }
    /* the final name and the temporary must be allowed too (a forbidden
     * path inside a root), before either is made */
    const char *why = NULL;
    if (check_new_name(p, dirfd, name, &why) < 0 || check_new_name(p, dirfd, tmp, &why) < 0) {
        int e = errno;
        close(dirfd);
        return fail(L, e, why ? why : "%s: %s", path);
    }
    int probe = confined_open(p, path, O_PATH | O_NOFOLLOW, 0, &why);
    if (probe >= 0)
        close(probe);
    else if (errno == EACCES) {
        close(dirfd);
        return fail(L, EACCES, "permission denied: %s (%s)", path);
    }
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        close(dirfd);
        return fail(L, e, "%s: %s", path);
    }
    char err[256];
    int w = targz_write_fd(fd, v, n, (int64_t)time(NULL), err, sizeof err);
    int e = errno;
    if (close(fd) < 0 && w == 0) {
        w = -1;
        e = errno;
        snprintf(err, sizeof err, "%s", strerror(e));
    }
    if (w == 0 && renameat(dirfd, tmp, dirfd, name) < 0) {
        w = -1;
        e = errno;
        snprintf(err, sizeof err, "%s", strerror(e));
    }
    if (w < 0)
        unlinkat(dirfd, tmp, 0);
    close(dirfd);
    if (w < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, err);
        lua_pushinteger(L, e ? e : EIO);
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

void bind_fs(struct plugin *p)
{
    lua_State *L = p->sb.L;
    static const luaL_Reg fns[] = {
        {"read", l_read}, {"write", l_write}, {"list", l_list}, {"stat", l_stat},
        {"remove", l_remove}, {"mkdir", l_mkdir}, {"archive", l_archive}, {NULL, NULL},
    };
    lua_newtable(L);
    lua_pushlightuserdata(L, p);
    luaL_setfuncs(L, fns, 1);
}
