/*
 * Endpoint handlers, one per route. Each answers the request it is given
 * (queues exactly one reply) and returns the MHD result.
 */
#ifndef SBX_HANDLERS_H
#define SBX_HANDLERS_H

#include "sbx_http.h"

typedef enum MHD_Result (*sbx_handler)(struct sbx_req *);

/* sbx_oauth.c */
enum MHD_Result h_ongoing_access(struct sbx_req *);
enum MHD_Result h_widget(struct sbx_req *);
enum MHD_Result h_token(struct sbx_req *);
enum MHD_Result h_revoke(struct sbx_req *);

/* sbx_rest.c */
enum MHD_Result h_version(struct sbx_req *);
enum MHD_Result h_accounts(struct sbx_req *);
enum MHD_Result h_account(struct sbx_req *);
enum MHD_Result h_balance(struct sbx_req *);
enum MHD_Result h_transactions(struct sbx_req *);
enum MHD_Result h_account_transactions(struct sbx_req *);
enum MHD_Result h_transaction(struct sbx_req *);
enum MHD_Result h_account_transaction(struct sbx_req *);
enum MHD_Result h_accesses(struct sbx_req *);
enum MHD_Result h_access(struct sbx_req *);
enum MHD_Result h_sync_create(struct sbx_req *);
enum MHD_Result h_sync_get(struct sbx_req *);

/* sbx_control.c */
enum MHD_Result h_ctl_requests(struct sbx_req *);
enum MHD_Result h_ctl_requests_clear(struct sbx_req *);
enum MHD_Result h_ctl_stats(struct sbx_req *);
enum MHD_Result h_ctl_stats_clear(struct sbx_req *);
enum MHD_Result h_ctl_config(struct sbx_req *);
enum MHD_Result h_ctl_config_set(struct sbx_req *);
enum MHD_Result h_ctl_faults(struct sbx_req *);
enum MHD_Result h_ctl_faults_add(struct sbx_req *);
enum MHD_Result h_ctl_faults_clear(struct sbx_req *);
enum MHD_Result h_ctl_issued(struct sbx_req *);
enum MHD_Result h_ctl_revoke_user(struct sbx_req *);
enum MHD_Result h_ctl_transactions(struct sbx_req *);
enum MHD_Result h_ctl_grants(struct sbx_req *);
enum MHD_Result h_ctl_grants_mint(struct sbx_req *);
enum MHD_Result h_ctl_grants_detail(struct sbx_req *);
enum MHD_Result h_ctl_refreshes(struct sbx_req *);
enum MHD_Result h_ctl_refreshes_clear(struct sbx_req *);
enum MHD_Result h_ctl_token_check(struct sbx_req *);

/* sbx_notify.c */
enum MHD_Result h_notifications(struct sbx_req *);
enum MHD_Result h_notification_add(struct sbx_req *);
enum MHD_Result h_notification(struct sbx_req *);
enum MHD_Result h_notification_put(struct sbx_req *);
enum MHD_Result h_notification_delete(struct sbx_req *);
enum MHD_Result h_ctl_notifications(struct sbx_req *);
enum MHD_Result h_ctl_notifications_fire(struct sbx_req *);

/* sbx_bank.c */
enum MHD_Result h_ctl_txn_book(struct sbx_req *);
enum MHD_Result h_ctl_txn_add(struct sbx_req *);
enum MHD_Result h_ctl_txn_correct(struct sbx_req *);
enum MHD_Result h_ctl_txn_drop(struct sbx_req *);

#endif
