from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.contrib.rest_framework import OAuth2Authentication, TokenHasScope
from oauth2_provider.models import AccessToken, RefreshToken
from rest_framework import generics, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated

from . import middleware
from .models import Device, Link, Measurement


class SyncScope(TokenHasScope):
    """OAuth2 tokens need scope `sync`; an API key (DRF Token) has no scopes."""

    def has_permission(self, request, view):
        if isinstance(request.auth, AccessToken):
            return super().has_permission(request, view)
        return True


class OptionalPagination(PageNumberPagination):
    """iNode style: `?no_pagination` gives a plain JSON array."""

    page_size = 2
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset, request, view=None):
        if "no_pagination" in request.query_params:
            return None
        return super().paginate_queryset(queryset, request, view)


class MeasurementPagination(OptionalPagination):
    """Page-number pagination as DRF ships it, pages of 10 (25 rows: 3 pages)."""

    page_size = 10


class MeasurementSerializer(serializers.ModelSerializer):
    class Meta:
        model = Measurement
        fields = ["id", "device", "value"]


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "name", "serial", "kind"]


class LinkSerializer(serializers.ModelSerializer):
    class Meta:
        model = Link
        fields = ["id", "name", "start", "end", "length_m"]


class ApiList(generics.ListAPIView):
    # OAuth2Authentication first: its `WWW-Authenticate: Bearer` makes failures 401, not 403.
    authentication_classes = [OAuth2Authentication, TokenAuthentication]
    permission_classes = [IsAuthenticated, SyncScope]
    required_scopes = ["sync"]
    pagination_class = OptionalPagination


class LinkList(ApiList):
    queryset = Link.objects.order_by("id")
    serializer_class = LinkSerializer


class DeviceList(ApiList):
    queryset = Device.objects.order_by("id")
    serializer_class = DeviceSerializer


class MeasurementList(ApiList):
    queryset = Measurement.objects.order_by("id")
    serializer_class = MeasurementSerializer
    pagination_class = MeasurementPagination


@csrf_exempt
def test_touch_measurement(request, pk):
    """Test-only (loopback fixture): a new reading for one row, as a sensor would send."""
    m = Measurement.objects.get(pk=pk)
    m.value += 1
    m.save()
    return JsonResponse({"id": m.id, "value": m.value})


def test_state(request):
    """Test-only (loopback fixture): what the token endpoint has seen and what is valid now."""
    valid = RefreshToken.objects.filter(revoked__isnull=True).order_by("id")
    return JsonResponse({
        "valid_refresh_tokens": list(valid.values_list("token", flat=True)),
        "revoked_refresh_tokens": RefreshToken.objects.filter(revoked__isnull=False).count(),
        **middleware.snapshot(),
    })
