from django.contrib.auth.views import LoginView
from django.urls import path
from oauth2_provider import views as oauth

from inode import views

urlpatterns = [
    path("api/oauth/authorize/", oauth.AuthorizationView.as_view(), name="authorize"),
    path("api/oauth/token/", oauth.TokenView.as_view(), name="token"),
    path("api/oauth/revoke_token/", oauth.RevokeTokenView.as_view(), name="revoke-token"),
    path("api/v1/links/", views.LinkList.as_view()),
    path("api/v1/devices/", views.DeviceList.as_view()),
    path("api/v1/measurements/", views.MeasurementList.as_view()),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("_test/state", views.test_state),
    path("_test/measurements/<int:pk>/touch", views.test_touch_measurement),
]
