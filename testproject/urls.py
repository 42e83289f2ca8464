from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),  # users sign in for their notebooks
    path("hostapi/", include("ipynbsrv_backends.hostapi.urls")),
    path("api/", include("ipynbsrv_backends.api.urls")),
    path("proxy/", include("ipynbsrv_backends.proxy_urls")),
]
