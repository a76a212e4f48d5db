/* The thread -> loop mailbox. See mailbox.h for the contract. */
#include "base/mailbox.h"

#include "base/model.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

static void on_async(uv_async_t *h)
{
    gw_mailbox *mb = h->data;
    uv_mutex_lock(&mb->mu);
    gw_mail *list = mb->head;
    mb->st.delivered += mb->n;
    mb->head = mb->tail = NULL;
    mb->n = mb->bytes = 0;
    mb->st.depth = 0;
    if (mb->waiters)
        uv_cond_broadcast(&mb->room);
    uv_mutex_unlock(&mb->mu);
    if (list)
        mb->deliver(mb, list);
}

int gw_mailbox_init(gw_mailbox *mb, uv_loop_t *loop, size_t max_items, size_t max_bytes,
                    gw_mailbox_cb deliver, gw_mailbox_discard_cb discard)
{
    void *data = mb->data;
    if (!max_items || !deliver)
        return GW_EINVAL;
    memset(mb, 0, sizeof(*mb));
    mb->data = data;
    mb->max_items = max_items;
    mb->max_bytes = max_bytes;
    mb->deliver = deliver;
    mb->discard = discard;
    mb->loop_thread = uv_thread_self();
    if (uv_mutex_init(&mb->mu))
        return GW_ERR;
    if (uv_cond_init(&mb->room)) {
        uv_mutex_destroy(&mb->mu);
        return GW_ERR;
    }
    if (uv_async_init(loop, &mb->async, on_async)) {
        uv_cond_destroy(&mb->room);
        uv_mutex_destroy(&mb->mu);
        return GW_ERR;
    }
    mb->async.data = mb;
    return GW_OK;
}

static int full(const gw_mailbox *mb, size_t bytes)
{
    if (mb->n == 0)
        return 0; /* one item always fits, however large */
    return mb->n >= mb->max_items || (mb->max_bytes && mb->bytes + bytes > mb->max_bytes);
}

int gw_mailbox_post(gw_mailbox *mb, gw_mail *item, size_t bytes, int flags)
{
    uv_mutex_lock(&mb->mu);
    if ((flags & GW_MAIL_OVER) && !mb->closed && full(mb, bytes)) {
        mb->st.over++;
    } else if ((flags & GW_MAIL_KEEP) && !mb->closed && full(mb, bytes)) {
        uv_thread_t self = uv_thread_self();
        if (!uv_thread_equal(&self, &mb->loop_thread)) {
            mb->st.waits++;
            mb->waiters++;
            while (!mb->closed && full(mb, bytes))
                uv_cond_wait(&mb->room, &mb->mu);
            mb->waiters--;
        }
    } else if (!mb->closed && full(mb, bytes)) {
        mb->st.dropped_full++;
        uv_mutex_unlock(&mb->mu);
        return GW_EFULL;
    }
    if (mb->closed) {
        uv_mutex_unlock(&mb->mu);
        return GW_ERR;
    }
    item->next = NULL;
    item->bytes = bytes;
    int was_empty = mb->head == NULL;
    if (mb->tail)
        mb->tail->next = item;
    else
        mb->head = item;
    mb->tail = item;
    mb->n++;
    mb->bytes += bytes;
    mb->st.posted++;
    mb->st.depth = mb->n;
    if (mb->n > mb->st.peak)
        mb->st.peak = mb->n;
    /* One wake-up per empty -> non-empty transition. Sent under the lock so
     * that once close has set `closed` no send can still be on its way to a
     * handle being closed. */
    if (was_empty)
        uv_async_send(&mb->async);
    uv_mutex_unlock(&mb->mu);
    return GW_OK;
}

void gw_mailbox_count_drop(gw_mailbox *mb)
{
    uv_mutex_lock(&mb->mu);
    mb->st.dropped++;
    uv_mutex_unlock(&mb->mu);
}

void gw_mailbox_get_stats(gw_mailbox *mb, gw_mailbox_stats *out)
{
    uv_mutex_lock(&mb->mu);
    *out = mb->st;
    uv_mutex_unlock(&mb->mu);
}

static void on_closed(uv_handle_t *h)
{
    gw_mailbox *mb = h->data;
    /* Taking the lock once more, and waiting for woken KEEP posters to leave,
     * makes sure no producer is still inside post (their own loops are done). */
    uv_mutex_lock(&mb->mu);
    while (mb->waiters) {
        uv_mutex_unlock(&mb->mu);
        sched_yield();
        uv_mutex_lock(&mb->mu);
    }
    gw_mail *list = mb->head;
    mb->head = mb->tail = NULL;
    mb->n = mb->bytes = 0;
    uv_mutex_unlock(&mb->mu);
    while (list) {
        gw_mail *m = list;
        list = m->next;
        if (mb->discard)
            mb->discard(mb, m);
        else
            free(m);
    }
    uv_cond_destroy(&mb->room);
    uv_mutex_destroy(&mb->mu);
    if (mb->on_close)
        mb->on_close(mb);
}

void gw_mailbox_close(gw_mailbox *mb, gw_mailbox_close_cb cb)
{
    uv_mutex_lock(&mb->mu);
    mb->closed = 1;
    uv_cond_broadcast(&mb->room);
    uv_mutex_unlock(&mb->mu);
    mb->on_close = cb;
    uv_close((uv_handle_t *)&mb->async, on_closed);
}
