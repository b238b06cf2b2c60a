// How many addresses one tag set (a rule's IPv4 or IPv6 set) may hold: the
// tagger's shadow refuses to grow a set past TAG_SET_LIMIT, and the kernel
// set is declared a little larger (plan.ts), because the kernel counts an
// element that has timed out until its garbage collector (about once a
// second) removes it, while the shadow forgets it at once.
//
// 65,536 addresses a set is far more than the names a home's clients look up
// within a tag's lifetime (minutes), and ~6 MB of kernel memory when full:
// what the bound stops is growth without limit (a flood of answers with
// fresh addresses, a list rule matching a CDN's whole range one answer at a
// time), not normal use.
export const TAG_SET_LIMIT = 65_536;
export const TAG_SET_SIZE = TAG_SET_LIMIT + 4096;
