from django.urls import path

from webapp.experiments import views

urlpatterns = [
    path("w/<slug:ws>/", views.dashboard, name="workspace-dashboard"),
]
