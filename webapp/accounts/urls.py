from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from webapp.accounts import share_views, views, workspace_views
from webapp.accounts.forms import RateLimitedLoginForm

urlpatterns = [
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(
        template_name="accounts/login.html", authentication_form=RateLimitedLoginForm,
        extra_context={"title": "Log in"}), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", views.account, name="account"),
    path("accounts/tokens/", views.token_create, name="account-token-create"),
    path("accounts/tokens/<int:pk>/revoke/", views.token_revoke, name="account-token-revoke"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(
        template_name="accounts/password_change.html", success_url=reverse_lazy("password-change-done")),
        name="password-change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="accounts/password_change_done.html"), name="password-change-done"),
    path("accounts/password-reset/", views.PasswordResetView.as_view(
        template_name="accounts/password_reset.html", email_template_name="accounts/password_reset_email.txt",
        subject_template_name="accounts/password_reset_subject.txt", success_url=reverse_lazy("password-reset-done")),
        name="password-reset"),
    path("accounts/password-reset/sent/", auth_views.PasswordResetDoneView.as_view(
        template_name="accounts/password_reset_done.html"), name="password-reset-done"),
    path("accounts/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        template_name="accounts/password_reset_confirm.html", success_url=reverse_lazy("password-reset-complete")),
        name="password-reset-confirm"),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(
        template_name="accounts/password_reset_complete.html"), name="password-reset-complete"),
    path("accounts/reset-links/", views.password_reset_links, name="password-reset-links"),
    path("accounts/users/", views.users, name="account-users"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/read/", views.notifications_read_all, name="notifications-read-all"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("invite/<str:token>/", views.invitation, name="invitation"),
    path("workspaces/new/", views.workspace_create, name="workspace-create"),
    path("w/<slug:ws>/members/", workspace_views.members, name="workspace-members"),
    path("w/<slug:ws>/members/add/", workspace_views.member_add, name="workspace-member-add"),
    path("w/<slug:ws>/members/<int:member_id>/role/", workspace_views.member_role, name="workspace-member-role"),
    path("w/<slug:ws>/members/<int:member_id>/remove/", workspace_views.member_remove, name="workspace-member-remove"),
    path("w/<slug:ws>/leave/", workspace_views.leave, name="workspace-leave"),
    path("w/<slug:ws>/invitations/", workspace_views.invitation_create, name="workspace-invitation-create"),
    path("w/<slug:ws>/invitations/<int:pk>/revoke/", workspace_views.invitation_revoke,
         name="workspace-invitation-revoke"),
    path("w/<slug:ws>/shares/", workspace_views.share_links, name="workspace-share-links"),
    path("w/<slug:ws>/shares/<int:pk>/revoke/", workspace_views.share_link_revoke, name="workspace-share-link-revoke"),
    path("w/<slug:ws>/activity/", workspace_views.activity, name="workspace-activity"),
    path("w/<slug:ws>/webhooks/", workspace_views.webhooks_page, name="workspace-webhooks"),
    path("w/<slug:ws>/webhooks/<int:pk>/delete/", workspace_views.webhook_delete, name="workspace-webhook-delete"),
    path("w/<slug:ws>/webhooks/<int:pk>/test/", workspace_views.webhook_test, name="workspace-webhook-test"),
    path("s/<str:token>/", share_views.share_page, name="share"),
    path("s/<str:token>/data/<slug:name>/", share_views.share_data, name="share-data"),
]
