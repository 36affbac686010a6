/* test_list.c - cmocka unit tests of common/list.h: the intrusive doubly linked list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "list.h"

struct item {
    int id;
    struct sc_list link;
};

/* Checks that head holds exactly the ids in want, in order, walking both ways. */
static void
expect_ids(const struct sc_list *head, const int *want, size_t n)
{
    const struct sc_list *it;
    size_t i = 0;

    assert_int_equal(sc_list_count(head), n);
    assert_int_equal(sc_list_empty(head), n == 0);
    for (it = head->next; it != head; it = it->next, i++)
        assert_int_equal(SC_LIST_ENTRY(it, const struct item, link)->id, want[i]);
    assert_int_equal(i, n);
    for (it = head->prev; it != head; it = it->prev)
        assert_int_equal(SC_LIST_ENTRY(it, const struct item, link)->id, want[--i]);
    assert_int_equal(i, 0);
}

static void
test_empty(void **state)
{
    struct sc_list head, node;

    (void)state;
    sc_list_init(&head);
    sc_list_init(&node);
    assert_true(sc_list_empty(&head));
    assert_null(sc_list_first(&head));
    assert_null(sc_list_last(&head));
    assert_null(sc_list_pop_front(&head));
    assert_int_equal(sc_list_count(&head), 0);
    assert_false(sc_list_linked(&node));
    sc_list_remove(&node); /* a node in no list: no-op */
    assert_false(sc_list_linked(&node));
    assert_true(sc_list_empty(&head));
}

static void
test_push_and_remove(void **state)
{
    struct item it[5];
    struct sc_list head;

    (void)state;
    sc_list_init(&head);
    for (int i = 0; i < 5; i++) {
        it[i].id = i;
        sc_list_init(&it[i].link);
    }
    sc_list_push_back(&head, &it[1].link);
    sc_list_push_back(&head, &it[2].link);
    sc_list_push_front(&head, &it[0].link);
    sc_list_insert_after(&it[2].link, &it[4].link);
    sc_list_insert_after(&it[2].link, &it[3].link);
    expect_ids(&head, (const int[]){0, 1, 2, 3, 4}, 5);
    assert_ptr_equal(sc_list_first(&head), &it[0].link);
    assert_ptr_equal(sc_list_last(&head), &it[4].link);
    assert_true(sc_list_linked(&it[3].link));

    sc_list_remove(&it[2].link); /* middle */
    assert_false(sc_list_linked(&it[2].link));
    expect_ids(&head, (const int[]){0, 1, 3, 4}, 4);
    sc_list_remove(&it[0].link); /* first */
    sc_list_remove(&it[4].link); /* last */
    expect_ids(&head, (const int[]){1, 3}, 2);
    assert_ptr_equal(sc_list_pop_front(&head), &it[1].link);
    assert_false(sc_list_linked(&it[1].link));
    assert_ptr_equal(sc_list_pop_front(&head), &it[3].link);
    expect_ids(&head, NULL, 0);

    /* A node taken out can go into another list. */
    struct sc_list other;
    sc_list_init(&other);
    sc_list_push_back(&other, &it[2].link);
    expect_ids(&other, (const int[]){2}, 1);
}

static void
test_foreach_safe_unlinks(void **state)
{
    struct item it[6];
    struct sc_list head, *n, *tmp;
    int seen = 0;

    (void)state;
    sc_list_init(&head);
    for (int i = 0; i < 6; i++) {
        it[i].id = i;
        sc_list_init(&it[i].link);
        sc_list_push_back(&head, &it[i].link);
    }
    /* Unlink the even ones while walking. */
    SC_LIST_FOREACH_SAFE(n, tmp, &head) {
        struct item *x = SC_LIST_ENTRY(n, struct item, link);
        seen++;
        if (x->id % 2 == 0)
            sc_list_remove(&x->link);
    }
    assert_int_equal(seen, 6);
    expect_ids(&head, (const int[]){1, 3, 5}, 3);
    seen = 0;
    SC_LIST_FOREACH(n, &head) {
        seen += SC_LIST_ENTRY(n, struct item, link)->id;
    }
    assert_int_equal(seen, 9);
    /* Unlink everything. */
    SC_LIST_FOREACH_SAFE(n, tmp, &head) {
        sc_list_remove(n);
    }
    expect_ids(&head, NULL, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_push_and_remove),
        cmocka_unit_test(test_foreach_safe_unlinks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
