// ambit's native socket helpers (Linux): what Node cannot do alone. Open a listening TCP socket,
// a bound UDP socket or an unconnected TCP socket inside another network namespace; read
// SO_ORIGINAL_DST; set and read SO_MARK; set IP_TRANSPARENT. Every function is synchronous, small,
// and returns a plain file descriptor that Node then adopts (net.Server.listen({fd}),
// dgram bind({fd}), new net.Socket({fd})). Failures throw an Error shaped like Node's system
// errors: code ("EPERM"), errno (negative, as Node does), syscall, and a message with the values.
//
// Namespace switching: setns(CLONE_NEWNET) changes the namespace of the calling thread only.
// N-API calls run on the JS thread, so the switch happens there, and nothing else runs on that
// thread until we switch back (the call is synchronous; libuv's pool threads are unaffected). The
// switch back happens on every path, error paths included; if it fails the thread would go on
// creating every later socket in the wrong namespace, so that one case aborts the process.
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef SO_MARK
#define SO_MARK 36
#endif

#define MAX_STR 4096

// ---- errors ---------------------------------------------------------------------------------

static const char *errno_code(int err) {
  switch (err) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EBADF: return "EBADF";
  case EACCES: return "EACCES";
  case EINVAL: return "EINVAL";
  case ENFILE: return "ENFILE";
  case EMFILE: return "EMFILE";
  case ENOMEM: return "ENOMEM";
  case ENOTSOCK: return "ENOTSOCK";
  case ENOPROTOOPT: return "ENOPROTOOPT";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EADDRINUSE: return "EADDRINUSE";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ENETUNREACH: return "ENETUNREACH";
  case ENOTCONN: return "ENOTCONN";
  case ENOBUFS: return "ENOBUFS";
  case ENOSYS: return "ENOSYS";
  default: return "EUNKNOWN";
  }
}

// Throws Error{code, errno, syscall} with message "<fn> <context>: <syscall> failed: <strerror> (<CODE>)".
static void throw_errno(napi_env env, const char *fn, const char *context, const char *syscall_name, int err) {
  char msg[MAX_STR + 256];
  snprintf(msg, sizeof msg, "%s %s: %s failed: %s (%s)", fn, context, syscall_name, strerror(err),
           errno_code(err));
  napi_value code, message, error, num, sys;
  napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
}

static void throw_type(napi_env env, const char *fn, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

// A failure recorded while in the other namespace, thrown only after switching back.
typedef struct {
  int err;
  const char *syscall;
} failure;

static int fail(failure *f, const char *syscall_name) {
  f->err = errno;
  f->syscall = syscall_name;
  return -1;
}

// ---- network namespace switch -------------------------------------------------------------

typedef struct {
  int saved;  // fd of this thread's namespace before the switch, or -1
  int target; // fd of the namespace we switched to, or -1
} ns_switch;

static int open_own_netns(void) {
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) return fd;
  // Kernels before 3.17 have no /proc/thread-self.
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
  return open(path, O_RDONLY | O_CLOEXEC);
}

// Enters the namespace at `path`; a NULL path means "stay where we are".
static int ns_enter(const char *path, ns_switch *sw, failure *f) {
  sw->saved = -1;
  sw->target = -1;
  if (path == NULL) return 0;
  sw->target = open(path, O_RDONLY | O_CLOEXEC);
  if (sw->target < 0) return fail(f, "open(netns)");
  sw->saved = open_own_netns();
  if (sw->saved < 0) {
    fail(f, "open(/proc/thread-self/ns/net)");
    close(sw->target);
    sw->target = -1;
    return -1;
  }
  if (setns(sw->target, CLONE_NEWNET) < 0) {
    fail(f, "setns(CLONE_NEWNET)");
    close(sw->saved);
    close(sw->target);
    sw->saved = sw->target = -1;
    return -1;
  }
  return 0;
}

static void ns_leave(ns_switch *sw) {
  if (sw->saved >= 0) {
    if (setns(sw->saved, CLONE_NEWNET) < 0) {
      // Going on would create every later socket of this thread in the pod's namespace.
      napi_fatal_error("ambit-native", NAPI_AUTO_LENGTH,
                       "cannot switch back to the original network namespace (setns failed)",
                       NAPI_AUTO_LENGTH);
    }
    close(sw->saved);
  }
  if (sw->target >= 0) close(sw->target);
  sw->saved = sw->target = -1;
}

// ---- socket creation (runs inside the namespace; records failures, never throws) ------------

typedef struct {
  int family; // AF_INET or AF_INET6
  int transparent, reuseaddr, reuseport, has_mark;
  uint32_t mark;
  int backlog;
  int has_bind;
  struct sockaddr_storage bind_addr;
  socklen_t bind_len;
} sock_opts;

static int set_int_opt(int fd, int level, int name, int value, failure *f, const char *label) {
  if (setsockopt(fd, level, name, &value, sizeof value) < 0) return fail(f, label);
  return 0;
}

static int make_socket(int type, const sock_opts *o, failure *f) {
  int fd = socket(o->family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(f, "socket");
  int v6 = o->family == AF_INET6;
  if ((o->reuseaddr && set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1, f, "setsockopt(SO_REUSEADDR)") < 0) ||
      (o->reuseport && set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1, f, "setsockopt(SO_REUSEPORT)") < 0) ||
      (o->transparent && !v6 && set_int_opt(fd, SOL_IP, IP_TRANSPARENT, 1, f, "setsockopt(IP_TRANSPARENT)") < 0) ||
      (o->transparent && v6 &&
       set_int_opt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, f, "setsockopt(IPV6_TRANSPARENT)") < 0) ||
      (o->has_mark && set_int_opt(fd, SOL_SOCKET, SO_MARK, (int)o->mark, f, "setsockopt(SO_MARK)") < 0) ||
      (o->has_bind && bind(fd, (const struct sockaddr *)&o->bind_addr, o->bind_len) < 0 && fail(f, "bind") < 0)) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// ---- argument helpers -----------------------------------------------------------------------

// Fills `out` with the string at argv[i]; NULL/undefined give an empty path (= current namespace).
static int get_ns_path(napi_env env, napi_value v, char *out, size_t cap, int *is_null) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  *is_null = (t == napi_null || t == napi_undefined);
  if (*is_null) return 0;
  size_t len = 0;
  if (t != napi_string || napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok || len == 0 ||
      len >= cap - 1)
    return -1;
  return 0;
}

static int get_string(napi_env env, napi_value v, char *out, size_t cap) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  size_t len = 0;
  if (t != napi_string || napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok || len >= cap - 1)
    return -1;
  return 0;
}

static int get_port(napi_env env, napi_value v, int *port) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) return -1;
  double d;
  napi_get_value_double(env, v, &d);
  if (d < 0 || d > 65535 || d != (double)(int)d) return -1;
  *port = (int)d;
  return 0;
}

// Optional property of an options object: returns 1 when present (and not undefined).
static int opt_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  if (obj == NULL) return 0;
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return 0;
  napi_get_named_property(env, obj, name, out);
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined;
}

static int opt_bool(napi_env env, napi_value obj, const char *name, int *out) {
  napi_value v;
  *out = 0;
  if (!opt_prop(env, obj, name, &v)) return 0;
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return -1;
  *out = b;
  return 0;
}

static int opt_uint32(napi_env env, napi_value obj, const char *name, int *has, uint32_t *out) {
  napi_value v;
  *has = 0;
  if (!opt_prop(env, obj, name, &v)) return 0;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 || d != (double)(uint32_t)d)
    return -1;
  *has = 1;
  *out = (uint32_t)d;
  return 0;
}

static napi_value get_options_object(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_object ? v : NULL;
}

// Parses an IP literal (v4 or v6, no brackets) and port into a sockaddr. Returns the family or -1.
static int parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = sizeof *a4;
    return AF_INET;
  }
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = sizeof *a6;
    return AF_INET6;
  }
  return -1;
}

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// Shared by listenInNetns and udpSocketInNetns: (nsPath, host, port, opts) → bound fd.
static napi_value bound_socket_in_netns(napi_env env, napi_callback_info info, const char *fn, int type) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns[MAX_STR], host[256], context[MAX_STR + 300];
  int ns_null, port;
  if (argc < 3) return throw_type(env, fn, "expected (nsPath, host, port, opts?)"), NULL;
  if (get_ns_path(env, argv[0], ns, sizeof ns, &ns_null) < 0)
    return throw_type(env, fn, "nsPath must be a non-empty path string or null"), NULL;
  if (get_string(env, argv[1], host, sizeof host) < 0) return throw_type(env, fn, "host must be a string"), NULL;
  if (get_port(env, argv[2], &port) < 0) return throw_type(env, fn, "port must be an integer 0..65535"), NULL;
  napi_value opts = argc > 3 ? get_options_object(env, argv[3]) : NULL;

  sock_opts o;
  memset(&o, 0, sizeof o);
  o.backlog = 511;
  int has_backlog;
  uint32_t backlog;
  if (opt_bool(env, opts, "transparent", &o.transparent) < 0 || opt_bool(env, opts, "reuseaddr", &o.reuseaddr) < 0 ||
      opt_bool(env, opts, "reuseport", &o.reuseport) < 0 ||
      opt_uint32(env, opts, "mark", &o.has_mark, &o.mark) < 0 ||
      opt_uint32(env, opts, "backlog", &has_backlog, &backlog) < 0)
    return throw_type(env, fn, "bad option: transparent/reuseaddr/reuseport are booleans, mark/backlog integers"),
           NULL;
  if (has_backlog) o.backlog = backlog > 65535 ? 65535 : (int)backlog;
  o.family = parse_addr(host, port, &o.bind_addr, &o.bind_len);
  if (o.family < 0) return throw_type(env, fn, "host must be an IPv4 or IPv6 literal"), NULL;
  o.has_bind = 1;
  snprintf(context, sizeof context, "(netns %s, %s%s%s:%d)", ns_null ? "<current>" : ns,
           o.family == AF_INET6 ? "[" : "", host, o.family == AF_INET6 ? "]" : "", port);

  failure f = {0, NULL};
  ns_switch sw;
  int fd = -1;
  if (ns_enter(ns_null ? NULL : ns, &sw, &f) == 0) {
    fd = make_socket(type, &o, &f);
    if (fd >= 0 && type == SOCK_STREAM && listen(fd, o.backlog) < 0) {
      fail(&f, "listen");
      close(fd);
      fd = -1;
    }
    ns_leave(&sw);
  }
  if (fd < 0) return throw_errno(env, fn, context, f.syscall, f.err), NULL;
  return make_int(env, fd);
}

// listenInNetns(nsPath | null, host, port, {transparent?, reuseaddr?, reuseport?, mark?, backlog?}) → fd
static napi_value listen_in_netns(napi_env env, napi_callback_info info) {
  return bound_socket_in_netns(env, info, "listenInNetns", SOCK_STREAM);
}

// udpSocketInNetns(nsPath | null, host, port, {transparent?, reuseaddr?, reuseport?, mark?}) → fd
static napi_value udp_socket_in_netns(napi_env env, napi_callback_info info) {
  return bound_socket_in_netns(env, info, "udpSocketInNetns", SOCK_DGRAM);
}

// connectSocketInNetns(nsPath | null, {family?: 4|6, mark?, transparent?, bindHost?, bindPort?}) → fd
// An unconnected nonblocking TCP socket; the caller connects it (Node: new net.Socket({fd}).connect()).
static napi_value connect_socket_in_netns(napi_env env, napi_callback_info info) {
  const char *fn = "connectSocketInNetns";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns[MAX_STR], host[256] = "", context[MAX_STR + 300];
  int ns_null;
  if (argc < 1) return throw_type(env, fn, "expected (nsPath, opts?)"), NULL;
  if (get_ns_path(env, argv[0], ns, sizeof ns, &ns_null) < 0)
    return throw_type(env, fn, "nsPath must be a non-empty path string or null"), NULL;
  napi_value opts = argc > 1 ? get_options_object(env, argv[1]) : NULL;

  sock_opts o;
  memset(&o, 0, sizeof o);
  o.family = AF_INET;
  int has_family, has_port;
  uint32_t family, bind_port = 0;
  napi_value v;
  if (opt_bool(env, opts, "transparent", &o.transparent) < 0 ||
      opt_uint32(env, opts, "mark", &o.has_mark, &o.mark) < 0 ||
      opt_uint32(env, opts, "family", &has_family, &family) < 0 ||
      opt_uint32(env, opts, "bindPort", &has_port, &bind_port) < 0 || bind_port > 65535 ||
      (has_family && family != 4 && family != 6))
    return throw_type(env, fn, "bad option: family is 4 or 6, mark/bindPort integers, transparent a boolean"), NULL;
  if (has_family) o.family = family == 6 ? AF_INET6 : AF_INET;
  if (opt_prop(env, opts, "bindHost", &v)) {
    if (get_string(env, v, host, sizeof host) < 0) return throw_type(env, fn, "bindHost must be a string"), NULL;
    int fam = parse_addr(host, (int)bind_port, &o.bind_addr, &o.bind_len);
    if (fam < 0) return throw_type(env, fn, "bindHost must be an IPv4 or IPv6 literal"), NULL;
    if (has_family && fam != o.family) return throw_type(env, fn, "bindHost is not of the given family"), NULL;
    o.family = fam;
    o.has_bind = 1;
  } else if (has_port && bind_port != 0) {
    // A port without a host binds the wildcard address of the family.
    parse_addr(o.family == AF_INET6 ? "::" : "0.0.0.0", (int)bind_port, &o.bind_addr, &o.bind_len);
    snprintf(host, sizeof host, "%s", o.family == AF_INET6 ? "::" : "0.0.0.0");
    o.has_bind = 1;
  }
  snprintf(context, sizeof context, "(netns %s, bind %s:%u)", ns_null ? "<current>" : ns,
           o.has_bind ? host : "none", bind_port);

  failure f = {0, NULL};
  ns_switch sw;
  int fd = -1;
  if (ns_enter(ns_null ? NULL : ns, &sw, &f) == 0) {
    fd = make_socket(SOCK_STREAM, &o, &f);
    ns_leave(&sw);
  }
  if (fd < 0) return throw_errno(env, fn, context, f.syscall, f.err), NULL;
  return make_int(env, fd);
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) return -1;
  int32_t n;
  napi_get_value_int32(env, v, &n);
  if (n < 0) return -1;
  *fd = n;
  return 0;
}

// originalDst(fd) → {ip, port, family}: the destination before an iptables REDIRECT/DNAT.
static napi_value original_dst(napi_env env, napi_callback_info info) {
  const char *fn = "originalDst";
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  char context[64];
  if (argc < 1 || get_fd(env, argv[0], &fd) < 0) return throw_type(env, fn, "fd must be a non-negative integer"), NULL;
  snprintf(context, sizeof context, "(fd %d)", fd);

  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) < 0) return throw_errno(env, fn, context, "getsockname", errno), NULL;

  struct sockaddr_storage dst;
  memset(&dst, 0, sizeof dst);
  len = sizeof dst;
  int rc = -1;
  const char *opt_name = "getsockopt(SO_ORIGINAL_DST)";
  if (local.ss_family == AF_INET6) {
    struct sockaddr_in6 *l6 = (struct sockaddr_in6 *)&local;
    if (IN6_IS_ADDR_V4MAPPED(&l6->sin6_addr)) {
      // An IPv4 connection on a dual-stack socket: conntrack knows it as IPv4.
      rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
    } else {
      opt_name = "getsockopt(IP6T_SO_ORIGINAL_DST)";
      rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len);
    }
  } else if (local.ss_family == AF_INET) {
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
  } else {
    errno = EAFNOSUPPORT;
  }
  if (rc < 0) return throw_errno(env, fn, context, opt_name, errno), NULL;

  char ip[INET6_ADDRSTRLEN];
  int port, family;
  if (dst.ss_family == AF_INET6) {
    struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&dst;
    inet_ntop(AF_INET6, &d6->sin6_addr, ip, sizeof ip);
    port = ntohs(d6->sin6_port);
    family = 6;
  } else {
    struct sockaddr_in *d4 = (struct sockaddr_in *)&dst;
    inet_ntop(AF_INET, &d4->sin_addr, ip, sizeof ip);
    port = ntohs(d4->sin_port);
    family = 4;
  }
  napi_value out, ipv;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, ip, NAPI_AUTO_LENGTH, &ipv);
  napi_set_named_property(env, out, "ip", ipv);
  napi_set_named_property(env, out, "port", make_int(env, port));
  napi_set_named_property(env, out, "family", make_int(env, family));
  return out;
}

// setMark(fd, mark): SO_MARK (needs CAP_NET_ADMIN).
static napi_value set_mark(napi_env env, napi_callback_info info) {
  const char *fn = "setMark";
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  double d;
  char context[64];
  if (argc < 2 || get_fd(env, argv[0], &fd) < 0) return throw_type(env, fn, "fd must be a non-negative integer"), NULL;
  if (napi_get_value_double(env, argv[1], &d) != napi_ok || d < 0 || d > 4294967295.0 || d != (double)(uint32_t)d)
    return throw_type(env, fn, "mark must be an integer 0..2^32-1"), NULL;
  uint32_t mark = (uint32_t)d;
  snprintf(context, sizeof context, "(fd %d, mark 0x%x)", fd, mark);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
    return throw_errno(env, fn, context, "setsockopt(SO_MARK)", errno), NULL;
  return NULL;
}

// getMark(fd) → mark: reads SO_MARK back.
static napi_value get_mark(napi_env env, napi_callback_info info) {
  const char *fn = "getMark";
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  char context[64];
  if (argc < 1 || get_fd(env, argv[0], &fd) < 0) return throw_type(env, fn, "fd must be a non-negative integer"), NULL;
  snprintf(context, sizeof context, "(fd %d)", fd);
  uint32_t mark = 0;
  socklen_t len = sizeof mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len) < 0)
    return throw_errno(env, fn, context, "getsockopt(SO_MARK)", errno), NULL;
  napi_value out;
  napi_create_uint32(env, mark, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenInNetns", NULL, listen_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSocketInNetns", NULL, udp_socket_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectSocketInNetns", NULL, connect_socket_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"originalDst", NULL, original_dst, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMark", NULL, set_mark, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getMark", NULL, get_mark, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
