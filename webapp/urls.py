from django.contrib import admin
from django.urls import include, path

from webapp.accounts import views as account_views
from webapp.api import api

urlpatterns = [
    path("", account_views.home, name="home"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("webapp.accounts.urls")),
    path("", include("webapp.datasets.urls")),
    path("", include("webapp.experiments.urls")),
]
