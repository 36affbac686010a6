/* list.h - an intrusive doubly linked list: nodes live inside their owners, so linking never allocates. */
#ifndef DLQ_COMMON_LIST_H
#define DLQ_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

/*
 * One type serves as the list head and as the node embedded in each
 * member (as in the Linux kernel and libevent's queue macros, without the
 * macros' types):
 *
 *     struct job { struct sc_list link; int id; };
 *     struct sc_list jobs;                         sc_list_init(&jobs);
 *     sc_list_push_back(&jobs, &j->link);
 *     SC_LIST_FOREACH_SAFE(it, tmp, &jobs) {
 *         struct job *j = SC_LIST_ENTRY(it, struct job, link);
 *         sc_list_remove(&j->link);                safe: tmp holds the next node
 *     }
 *
 * The list is circular with the head as sentinel: an empty head points at
 * itself, and so does a node that is in no list (after sc_list_init() or
 * sc_list_remove()), which sc_list_linked() tells. Every operation is O(1)
 * except sc_list_count(); none allocates, fails or locks: the owner of the
 * list decides which thread touches it. A node is in at most one list at a
 * time; a node must be initialized (or be linked) before sc_list_remove().
 * The layout is public because owners embed it; change it only through
 * these functions.
 */
struct sc_list {
    struct sc_list *next, *prev;
};

/* SC_LIST_ENTRY() is the owner of type `type` whose member `member` is the node n. */
#define SC_LIST_ENTRY(n, type, member) ((type *)(void *)((char *)(n) - offsetof(type, member)))

/* SC_LIST_FOREACH() visits every node of head from the front; the body must not unlink it. */
#define SC_LIST_FOREACH(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)

/* SC_LIST_FOREACH_SAFE() is SC_LIST_FOREACH() that allows the body to unlink (or free) it. */
#define SC_LIST_FOREACH_SAFE(it, tmp, head)                                                        \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

/* sc_list_init() makes l an empty list head, or a node that is in no list. */
static inline void
sc_list_init(struct sc_list *l)
{
    l->next = l->prev = l;
}

/* sc_list_empty() tells whether the list head l holds no node. */
static inline bool
sc_list_empty(const struct sc_list *l)
{
    return l->next == l;
}

/* sc_list_linked() tells whether the (initialized) node n is in a list. */
static inline bool
sc_list_linked(const struct sc_list *n)
{
    return n->next != n;
}

/* sc_list_insert_after() links node n (in no list) right after pos (a head or a linked node). */
static inline void
sc_list_insert_after(struct sc_list *pos, struct sc_list *n)
{
    n->prev = pos;
    n->next = pos->next;
    pos->next->prev = n;
    pos->next = n;
}

/* sc_list_push_front() links node n (in no list) first in head. */
static inline void
sc_list_push_front(struct sc_list *head, struct sc_list *n)
{
    sc_list_insert_after(head, n);
}

/* sc_list_push_back() links node n (in no list) last in head. */
static inline void
sc_list_push_back(struct sc_list *head, struct sc_list *n)
{
    sc_list_insert_after(head->prev, n);
}

/* sc_list_remove() unlinks node n from its list and leaves it in none; a no-op when it is in none. */
static inline void
sc_list_remove(struct sc_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* sc_list_first() is head's first node, or NULL when it is empty; sc_list_last() its last. */
static inline struct sc_list *
sc_list_first(const struct sc_list *head)
{
    return head->next == head ? NULL : head->next;
}

static inline struct sc_list *
sc_list_last(const struct sc_list *head)
{
    return head->prev == head ? NULL : head->prev;
}

/* sc_list_pop_front() unlinks and returns head's first node, or NULL when it is empty. */
static inline struct sc_list *
sc_list_pop_front(struct sc_list *head)
{
    struct sc_list *n = sc_list_first(head);

    if (n)
        sc_list_remove(n);
    return n;
}

/* sc_list_count() is the number of nodes in head: O(n), for tests and rare reports. */
static inline size_t
sc_list_count(const struct sc_list *head)
{
    size_t n = 0;

    for (const struct sc_list *it = head->next; it != head; it = it->next)
        n++;
    return n;
}

#endif
