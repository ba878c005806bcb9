from django.urls import path

from webapp.experiments import views

urlpatterns = [
    path("w/<slug:ws>/", views.dashboard, name="workspace-dashboard"),
    path("w/<slug:ws>/runs/new/", views.run_new, name="run-new"),
    path("w/<slug:ws>/runs/template.json", views.run_template, name="run-template"),
    path("w/<slug:ws>/runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("w/<slug:ws>/runs/<int:pk>/live.json", views.run_live, name="run-live"),
    path("w/<slug:ws>/runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("w/<slug:ws>/runs/<int:pk>/delete/", views.run_delete, name="run-delete"),
    path("w/<slug:ws>/runs/delete/", views.runs_delete, name="runs-delete"),
    path("w/<slug:ws>/runs/cancel/", views.runs_cancel, name="runs-cancel"),
    path("w/<slug:ws>/runs/<int:pk>/edit/", views.run_edit, name="run-edit"),
    path("w/<slug:ws>/runs/<int:pk>/continue/", views.run_continue, name="run-continue"),
    path("w/<slug:ws>/runs/<int:pk>/fork/", views.run_fork, name="run-fork"),
    path("w/<slug:ws>/runs/<int:pk>/priority/", views.run_priority, name="run-priority"),
    path("w/<slug:ws>/runs/<int:pk>/predict/", views.run_predict, name="run-predict"),
    path("w/<slug:ws>/runs/<int:pk>/download/<str:what>/", views.run_download, name="run-download"),
    path("w/<slug:ws>/compare/", views.compare, name="run-compare"),
    path("w/<slug:ws>/queue/", views.queue, name="run-queue"),
    path("w/<slug:ws>/sweeps/", views.sweep_list, name="sweep-list"),
    path("w/<slug:ws>/sweeps/<int:pk>/", views.sweep_detail, name="sweep-detail"),
    path("w/<slug:ws>/sweeps/<int:pk>/cancel/", views.sweep_cancel, name="sweep-cancel"),
    path("w/<slug:ws>/sweeps/<int:pk>/extend/", views.sweep_extend, name="sweep-extend"),
    path("w/<slug:ws>/sweeps/<int:pk>/delete/", views.sweep_delete, name="sweep-delete"),
]
