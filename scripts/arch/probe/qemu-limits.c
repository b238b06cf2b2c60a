/*
 * What qemu-user lets through, checked with the calls the known failures
 * blame (scripts/arch/known-failures.json, docs/design/architectures.md):
 * setsockopt(SO_MARK) on a UDP socket, and socket(AF_NETLINK, SOCK_RAW,
 * NETLINK_NETFILTER); NETLINK_ROUTE beside it as the control (qemu translates
 * that one). Built static for each architecture (scripts/arch/probe/run.sh)
 * and run natively and under qemu-ARCH-static: the same binary's answers,
 * one line per call. Needs root (CAP_NET_ADMIN) for SO_MARK.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_MARK
#define SO_MARK 36
#endif

static void say(const char *what, int r) {
  if (r < 0) printf("%s: -1 %s (errno %d)\n", what, strerror(errno), errno);
  else printf("%s: ok\n", what);
}

int main(void) {
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  say("socket(AF_INET, SOCK_DGRAM)", u);
  unsigned mark = 0x1100;
  say("setsockopt(SOL_SOCKET, SO_MARK, 0x1100)", setsockopt(u, SOL_SOCKET, SO_MARK, &mark, sizeof mark));
  unsigned got = 0;
  socklen_t len = sizeof got;
  int r = getsockopt(u, SOL_SOCKET, SO_MARK, &got, &len);
  say("getsockopt(SOL_SOCKET, SO_MARK)", r);
  if (r == 0) printf("  mark read back: 0x%x\n", got);
  close(u);
  int nf = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
  say("socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)", nf);
  if (nf >= 0) close(nf);
  int rt = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  say("socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)", rt);
  if (rt >= 0) close(rt);
  return 0;
}
