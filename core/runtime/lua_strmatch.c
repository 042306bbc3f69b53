/* lua_strmatch.c - the string.find, string.match, string.gmatch,
 * string.gsub and string.rep that plugins see, written for polarisd.
 *
 * Provides: Lua 5.4's pattern language (classes %a %c %d %g %l %p %s %u %w
 * %x and their complements, sets and ranges, '.', anchors, * + - ?,
 * captures and position captures, back-references, %b, %f) with the stock
 * library's results and error messages, but bounded:
 *   - every loop counts its steps and, every STEP_BATCH of them, calls the
 *     registrant's check_budget, which raises once the plugin's CPU budget
 *     is spent: a C function runs no VM instructions, so the count hook
 *     alone cannot stop a backtracking pattern;
 *   - recursion is capped at MAX_DEPTH nested calls per match attempt
 *     ("pattern too complex"), and the cap is set afresh before every
 *     attempt: nothing an earlier, aborted attempt left behind can lift it
 *     (Lua 5.4.4's gmatch iterator kept the counter of the attempt that
 *     raised, and recursed without a guard on its next call);
 *   - a plain find runs memmem over windows, so it is linear and counted;
 *   - rep returns "" at once when the result is empty, refuses a result
 *     larger than the memory the caller has left, and builds the rest by
 *     doubling, checking the budget between copies.
 * Differences from the stock library, on purpose: rep's two refusals
 * above, and the budget's error. spec/unit/strmatch_spec.lua and
 * spec/fuzz/fuzz_strmatch.c compare everything else with the stock
 * library on random subjects and patterns.
 *
 * Uses: Lua 5.4 C API (the C library's ctype in the "C" locale, as Lua's
 * own classes), memmem; the limits its registrant passes (sandbox.c). */
#include "runtime/lua_strmatch.h"

#include <ctype.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define MAX_CAPTURES 32          /* as LUA_MAXCAPTURES: more is "too many captures" */
#define MAX_DEPTH    200         /* as stock MAXCCALLS: the same patterns are "too complex" */
#define STEP_BATCH   4096        /* steps between two budget checks */
#define SCAN_BATCH   65536       /* bytes a single scan covers between two reports */
#define FIND_WINDOW  (1u << 20)  /* plain find: bytes searched per memmem */
#define REP_CHUNK    (1u << 20)  /* rep: bytes copied between two budget checks */
#define REP_MAX      ((size_t)INT_MAX)   /* the stock library's largest result */

#define CAP_OPEN (-1)            /* capture started, not closed yet */
#define CAP_POS  (-2)            /* position capture "()" */

struct mstate {
    lua_State *L;
    const struct rt_limits *lim;
    const char *s0, *s_end;      /* the subject */
    const char *p_end;           /* the pattern's end (the text is NUL-terminated there) */
    int depth;                   /* nested calls this attempt may still make */
    int ncap;
    size_t steps;                /* since the last budget check */
    struct {
        const char *at;
        ptrdiff_t len;           /* or CAP_OPEN, CAP_POS */
    } cap[MAX_CAPTURES];
};

static void spend(struct mstate *m, size_t n)
{
    m->steps += n;
    if (m->steps < STEP_BATCH)
        return;
    m->steps = 0;
    if (m->lim && m->lim->check_budget)
        m->lim->check_budget(m->L);
}

static void state_init(struct mstate *m, lua_State *L, const struct rt_limits *lim,
                       const char *s, size_t ls, const char *p_end)
{
    m->L = L;
    m->lim = lim;
    m->s0 = s;
    m->s_end = s + ls;
    m->p_end = p_end;
    m->steps = 0;
    m->ncap = 0;
    m->depth = MAX_DEPTH;
}

/* Before every attempt, not just the first: see the header comment. */
static void attempt_reset(struct mstate *m)
{
    m->ncap = 0;
    m->depth = MAX_DEPTH;
}

static const struct rt_limits *limits_of(lua_State *L, int up)
{
    return lua_touserdata(L, lua_upvalueindex(up));
}

/* ---- single-character items ---- */

/* Whether byte c is in the class named by letter cl (%a, %A, ...); any
 * other letter stands for itself. */
static bool in_class(int c, int cl)
{
    int hit;
    switch (tolower(cl)) {
    case 'a': hit = isalpha(c); break;
    case 'c': hit = iscntrl(c); break;
    case 'd': hit = isdigit(c); break;
    case 'g': hit = isgraph(c); break;
    case 'l': hit = islower(c); break;
    case 'p': hit = ispunct(c); break;
    case 's': hit = isspace(c); break;
    case 'u': hit = isupper(c); break;
    case 'w': hit = isalnum(c); break;
    case 'x': hit = isxdigit(c); break;
    case 'z': hit = c == 0; break;      /* deprecated in Lua, still there */
    default:
        return cl == c;
    }
    return isupper(cl) ? hit == 0 : hit != 0;
}

/* The end of the item that starts at p: past "%x", past "[...]", or p+1.
 * A set's first member is taken literally, so "[]]" and "[^]]" hold ']'. */
static const char *item_end(struct mstate *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[')
        return p;
    if (*p == '^')
        p++;
    do {
        if (p >= m->p_end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        c = *p++;
        if (c == '%' && p < m->p_end)
            p++;
    } while (*p != ']');
    return p + 1;
}

/* Whether byte c is in the set that opens at '[' and closes at close. */
static bool in_set(int c, const char *p, const char *close)
{
    bool hit = true;
    p++;
    if (*p == '^') {
        hit = false;
        p++;
    }
    while (p < close) {
        if (*p == '%') {
            if (in_class(c, (unsigned char)p[1]))
                return hit;
            p += 2;
        } else if (p[1] == '-' && p + 2 < close) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return hit;
            p += 3;
        } else {
            if ((unsigned char)*p == c)
                return hit;
            p++;
        }
    }
    return !hit;
}

/* Whether the subject byte at s matches the item p..ep. */
static bool item_matches(const struct mstate *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->s_end)
        return false;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return true;
    case '%':
        return in_class(c, (unsigned char)p[1]);
    case '[':
        return in_set(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* ---- the matcher: a backtracking search over the pattern ---- */

static const char *match_here(struct mstate *m, const char *s, const char *p);

/* %bxy at s: the end of a balanced x...y run, or NULL. */
static const char *balanced(struct mstate *m, const char *s, const char *p)
{
    if (p >= m->p_end - 1)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->s_end || *s != p[0])
        return NULL;
    char open = p[0], close = p[1];
    size_t open_count = 1;
    const char *start = s;
    for (s++; s < m->s_end; s++) {
        if (*s == close) {
            if (--open_count == 0) {
                spend(m, (size_t)(s - start));
                return s + 1;
            }
        } else if (*s == open) {
            open_count++;
        }
        if (((s - start) & (SCAN_BATCH - 1)) == 0)
            spend(m, SCAN_BATCH);
    }
    return NULL;
}

/* %1..%9 at s: the end of a copy of that capture, or NULL. */
static const char *backref(struct mstate *m, const char *s, int digit)
{
    int i = digit - '1';
    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
    /* a position capture's length is negative: as a size it never fits */
    size_t len = (size_t)m->cap[i].len;
    if ((size_t)(m->s_end - s) < len || memcmp(m->cap[i].at, s, len) != 0)
        return NULL;
    spend(m, len / 16);
    return s + len;
}

static const char *open_capture(struct mstate *m, const char *s, const char *p, ptrdiff_t kind)
{
    if (m->ncap >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->ncap].at = s;
    m->cap[m->ncap].len = kind;
    m->ncap++;
    const char *r = match_here(m, s, p);
    if (!r)
        m->ncap--;
    return r;
}

static const char *close_capture(struct mstate *m, const char *s, const char *p)
{
    int i = m->ncap - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].at;
    const char *r = match_here(m, s, p);
    if (!r)
        m->cap[i].len = CAP_OPEN;
    return r;
}

/* item* (or item+ once one is consumed): the longest run first. */
static const char *longest(struct mstate *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (item_matches(m, s + n, p, ep))
        if ((++n & (SCAN_BATCH - 1)) == 0)
            spend(m, SCAN_BATCH);
    for (; n >= 0; n--) {
        const char *r = match_here(m, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* item-: the shortest run first. */
static const char *shortest(struct mstate *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match_here(m, s, ep + 1);
        if (r)
            return r;
        if (!item_matches(m, s, p, ep))
            return NULL;
        s++;
    }
}

/* Matches the pattern from p against the subject from s: the end of the
 * match, or NULL. Steps that end the pattern's work here loop instead of
 * recursing, so depth grows only where backtracking needs a frame. */
static const char *match_here(struct mstate *m, const char *s, const char *p)
{
    if (m->depth-- == 0)
        luaL_error(m->L, "pattern too complex");
    spend(m, 1);
    while (p < m->p_end) {
        switch (*p) {
        case '(':
            if (p[1] == ')')
                s = open_capture(m, s, p + 2, CAP_POS);
            else
                s = open_capture(m, s, p + 1, CAP_OPEN);
            goto out;
        case ')':
            s = close_capture(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 == m->p_end) {
                if (s != m->s_end)
                    s = NULL;
                goto out;
            }
            break;                          /* a '$' inside: a literal */
        case '%':
            if (p[1] == 'b') {
                s = balanced(m, s, p + 2);
                if (!s)
                    goto out;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (*p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = item_end(m, p);
                int before = s == m->s0 ? 0 : (unsigned char)s[-1];
                int here = s < m->s_end ? (unsigned char)*s : 0;
                if (in_set(before, p, ep - 1) || !in_set(here, p, ep - 1)) {
                    s = NULL;
                    goto out;
                }
                p = ep;
                continue;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                s = backref(m, s, (unsigned char)p[1]);
                if (!s)
                    goto out;
                p += 2;
                continue;
            }
            break;                          /* a class: an item */
        default:
            break;
        }
        /* one item, then its optional repetition mark */
        const char *ep = item_end(m, p);
        char mark = ep < m->p_end ? *ep : '\0';
        if (!item_matches(m, s, p, ep)) {
            if (mark == '*' || mark == '?' || mark == '-') {
                p = ep + 1;                 /* zero of them will do */
                continue;
            }
            s = NULL;
            goto out;
        }
        if (mark == '?') {
            const char *r = match_here(m, s + 1, ep + 1);
            if (r) {
                s = r;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        if (mark == '+' || mark == '*') {
            s = longest(m, mark == '+' ? s + 1 : s, p, ep);
            goto out;
        }
        if (mark == '-') {
            s = shortest(m, s, p, ep);
            goto out;
        }
        s++;
        p = ep;
    }
out:
    m->depth++;
    return s;
}

/* ---- captures to Lua values ---- */

/* Pushes capture i (the whole match s..e when there are none), or adds
 * nothing and returns false after pushing a position capture's integer:
 * *cap and *len describe a string capture. */
static bool capture_text(struct mstate *m, int i, const char *s, const char *e,
                         const char **cap, size_t *len)
{
    if (i >= m->ncap) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *cap = s;
        *len = (size_t)(e - s);
        return true;
    }
    if (m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "unfinished capture");
    if (m->cap[i].len == CAP_POS) {
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].at - m->s0) + 1);
        return false;
    }
    *cap = m->cap[i].at;
    *len = (size_t)m->cap[i].len;
    return true;
}

static void push_capture(struct mstate *m, int i, const char *s, const char *e)
{
    const char *cap;
    size_t len;
    if (capture_text(m, i, s, e, &cap, &len))
        lua_pushlstring(m->L, cap, len);
}

/* All captures, or the whole match when there are none and s is given. */
static int push_captures(struct mstate *m, const char *s, const char *e)
{
    int n = m->ncap == 0 && s ? 1 : m->ncap;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- find, match ---- */

/* A 1-based, possibly negative, start as string.find reads it. */
static size_t start_of(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static bool has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i]))
            return true;
    return false;
}

/* memmem over windows at least as long as the needle: linear in all, and
 * counted between windows. */
static const char *plain_find(struct mstate *m, const char *s, size_t ls, const char *p, size_t lp)
{
    if (lp == 0)
        return s;
    if (lp > ls)
        return NULL;
    size_t starts_left = ls - lp + 1;
    size_t window = lp > FIND_WINDOW ? lp : FIND_WINDOW;
    for (size_t from = 0; starts_left > 0;) {
        size_t starts = starts_left < window ? starts_left : window;
        const char *hit = memmem(s + from, starts + lp - 1, p, lp);
        if (hit)
            return hit;
        spend(m, starts + lp);
        from += starts;
        starts_left -= starts;
    }
    return NULL;
}

static int find_or_match(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    struct mstate m;
    state_init(&m, L, limits_of(L, 1), s, ls, p + lp);
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *hit = plain_find(&m, s + init, ls - init, p, lp);
        if (!hit) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
        lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
        return 2;
    }
    bool anchored = lp > 0 && *p == '^';
    if (anchored)
        p++;
    const char *at = s + init;
    for (;;) {
        attempt_reset(&m);
        const char *e = match_here(&m, at, p);
        if (e) {
            if (!find)
                return push_captures(&m, at, e);
            lua_pushinteger(L, (lua_Integer)(at - s) + 1);
            lua_pushinteger(L, (lua_Integer)(e - s));
            return push_captures(&m, NULL, NULL) + 2;
        }
        if (anchored || at >= m.s_end)
            break;
        at++;
    }
    luaL_pushfail(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_or_match(L, true);
}

static int l_match(lua_State *L)
{
    return find_or_match(L, false);
}

/* ---- gmatch ---- */

struct gm {
    struct mstate m;
    const char *p;
    const char *next;            /* where the next attempt starts */
    const char *last;            /* the end of the last match: an empty match there is skipped */
};

/* upvalues: subject and pattern (kept alive: g points into them), state */
static int gmatch_next(lua_State *L)
{
    struct gm *g = lua_touserdata(L, lua_upvalueindex(3));
    g->m.L = L;
    for (const char *at = g->next; at <= g->m.s_end; at++) {
        attempt_reset(&g->m);
        const char *e = match_here(&g->m, at, g->p);
        if (e && e != g->last) {
            g->next = g->last = e;
            return push_captures(&g->m, at, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
    lua_settop(L, 2);
    struct gm *g = lua_newuserdatauv(L, sizeof *g, 0);
    if (init > ls)
        init = ls + 1;               /* past the end: no attempt at all */
    state_init(&g->m, L, limits_of(L, 1), s, ls, p + lp);
    g->p = p;
    g->next = s + init;
    g->last = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* ---- gsub ---- */

/* A replacement string: %0-%9 are captures, %% a '%'. */
static void add_template(struct mstate *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t l;
    const char *t = lua_tolstring(L, 3, &l);
    const char *end = t + l;
    spend(m, l / 64);
    for (const char *pct; (pct = memchr(t, '%', (size_t)(end - t))) != NULL; t = pct + 2) {
        luaL_addlstring(b, t, (size_t)(pct - t));
        char c = pct + 1 < end ? pct[1] : '\0';
        if (c == '%') {
            luaL_addchar(b, '%');
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (c >= '1' && c <= '9') {
            const char *cap;
            size_t len;
            if (capture_text(m, c - '1', s, e, &cap, &len))
                luaL_addlstring(b, cap, len);
            else
                luaL_addvalue(b);           /* a position, as text */
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", '%');
        }
    }
    luaL_addlstring(b, t, (size_t)(end - t));
}

/* Adds the replacement of s..e; whether the text changed. */
static bool add_replacement(struct mstate *m, luaL_Buffer *b, const char *s, const char *e, int rtype)
{
    lua_State *L = m->L;
    if (rtype == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (rtype == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_template(m, b, s, e);
        return true;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

static int l_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int rtype = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, rtype == LUA_TNUMBER || rtype == LUA_TSTRING || rtype == LUA_TFUNCTION ||
                     rtype == LUA_TTABLE, 3, "string/function/table");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *p_end = p + lp;
    bool anchored = lp > 0 && *p == '^';
    if (anchored)
        p++;
    struct mstate m;
    state_init(&m, L, limits_of(L, 1), s, ls, p_end);
    const char *at = s, *last = NULL;
    lua_Integer n = 0;
    bool changed = false;
    while (n < max) {
        attempt_reset(&m);
        const char *e = match_here(&m, at, p);
        if (e && e != last) {
            n++;
            changed = add_replacement(&m, &b, at, e, rtype) || changed;
            at = last = e;
        } else if (at < m.s_end) {
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchored)
            break;
    }
    if (changed) {
        luaL_addlstring(&b, at, (size_t)(m.s_end - at));
        luaL_pushresult(&b);
    } else {
        lua_pushvalue(L, 1);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- rep ---- */

static int l_rep(lua_State *L)
{
    const struct rt_limits *lim = limits_of(L, 1);
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    /* the stock library copies nothing n times here: an endless loop
     * for rep("", math.maxinteger) */
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t unit = l + lsep;
    if (unit < l || unit > REP_MAX / (size_t)n)
        return luaL_error(L, "resulting string too large");
    size_t total = (size_t)n * l + (size_t)(n - 1) * lsep;
    if (lim && lim->mem_room) {
        size_t room = lim->mem_room(L);
        if (total > room)
            return luaL_error(L, "not enough memory: the string would take %I bytes, memory_limit leaves %I",
                              (lua_Integer)total, (lua_Integer)room);
    }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, total);
    memcpy(out, s, l);
    size_t done = l;
    if (n > 1) {
        memcpy(out + l, sep, lsep);
        done = unit;
    }
    /* out[0..done) is a whole number of units: copying a prefix of it
     * after itself keeps the sequence, so the result doubles each time */
    while (done < total) {
        size_t step = done;
        if (step > REP_CHUNK)
            step = REP_CHUNK >= unit ? REP_CHUNK / unit * unit : unit;
        if (step > total - done)
            step = total - done;
        memcpy(out + done, out, step);
        done += step;
        if (lim && lim->check_budget)
            lim->check_budget(L);
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

void lua_strmatch_register(lua_State *L, int idx, const struct rt_limits *lim)
{
    static const luaL_Reg fns[] = {
        {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub},
        {"rep", l_rep}, {NULL, NULL},
    };
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, (void *)(uintptr_t)lim);
    luaL_setfuncs(L, fns, 1);
    lua_pop(L, 1);
}
