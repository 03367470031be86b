"""Generated handler Protocols, server bindings, clients and the SDK over InProcessTransport."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest

from eventstore import AppError
from eventstore.core.transport import InProcessTransport, RequestContext

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def shop() -> ModuleType:
    return generate(EXAMPLES / "shop" / "shop.proto")


def generate(path: Any) -> ModuleType:
    from eventstore.codegen import generate_module

    return generate_module(paths=[path], name="shop")


class Pricing:
    def quote(self, request: Any, ctx: RequestContext) -> Any:
        self.ctx = ctx
        return SHOP.QuoteReply(price=request.quantity * 250)


class AsyncOrders:
    def __init__(self) -> None:
        self.command_ids: list[str] = []

    async def place_order(self, cmd: Any, ctx: RequestContext) -> Any:
        await asyncio.sleep(0)
        self.command_ids.append(ctx.command_id)
        return SHOP.OrderAck(version=1)

    async def ship_order(self, cmd: Any, ctx: RequestContext) -> Any:
        raise AppError("NOT_PLACED", f"order {cmd.order_id!r} was never placed")


SHOP: Any = None


@pytest.fixture(autouse=True)
def _shop_module(shop: ModuleType) -> None:
    global SHOP
    SHOP = shop


def test_server_binding_routes_package_service_method_subjects(shop: ModuleType) -> None:
    server = shop.OrderCommandServiceServer(AsyncOrders())
    assert server.subjects == [
        "shop.v1.OrderCommandService.PlaceOrder",
        "shop.v1.OrderCommandService.ShipOrder",
    ]


def test_client_calls_a_plain_handler_through_the_transport(shop: ModuleType) -> None:
    transport = InProcessTransport(shop.PricingServiceServer(Pricing()))
    client = shop.PricingServiceClient(transport)
    reply = asyncio.run(client.quote(shop.QuoteRequest(sku="A", quantity=4)))
    assert reply.price == 1000


def test_client_calls_an_async_handler_and_carries_the_command_id(shop: ModuleType) -> None:
    orders = AsyncOrders()
    client = shop.OrderClient(InProcessTransport(shop.OrderCommandServiceServer(orders)))

    async def calls() -> None:
        await client.place_order(shop.PlaceOrderCommand(order_id="o-1"), command_id="cmd-7")
        await client.place_order(shop.PlaceOrderCommand(order_id="o-1"))
        await client.place_order(shop.PlaceOrderCommand(order_id="o-1"))

    asyncio.run(calls())
    assert orders.command_ids[0] == "cmd-7"
    assert len(set(orders.command_ids)) == 3


def test_metadata_given_to_the_client_reaches_the_handler(shop: ModuleType) -> None:
    pricing = Pricing()
    client = shop.PricingServiceClient(InProcessTransport(shop.PricingServiceServer(pricing)))
    asyncio.run(client.quote(shop.QuoteRequest(), metadata={"principal_id": "ann", "ip": "x"}))
    assert pricing.ctx.metadata.principal_id == "ann"
    assert dict(pricing.ctx.metadata.custom) == {"ip": "x"}


def test_app_error_raised_by_a_handler_is_raised_by_the_client(shop: ModuleType) -> None:
    client = shop.OrderClient(InProcessTransport(shop.OrderCommandServiceServer(AsyncOrders())))
    with pytest.raises(AppError) as caught:
        asyncio.run(client.ship_order(shop.ShipOrderCommand(order_id="o-9")))
    assert caught.value.code == "NOT_PLACED"
    assert "'o-9'" in caught.value.message


def test_request_of_the_wrong_type_is_refused_with_invalid_message_type(shop: ModuleType) -> None:
    client = shop.OrderClient(InProcessTransport(shop.OrderCommandServiceServer(AsyncOrders())))
    with pytest.raises(AppError) as caught:
        asyncio.run(client.place_order(shop.ShipOrderCommand(order_id="o-1")))
    assert caught.value.code == "INVALID_MESSAGE_TYPE"


def test_sdk_names_aggregate_clients_by_type_and_others_by_service(shop: ModuleType) -> None:
    transport = InProcessTransport(
        shop.OrderCommandServiceServer(AsyncOrders()), shop.PricingServiceServer(Pricing())
    )
    sdk = shop.SDK(transport)
    assert isinstance(sdk.order, shop.OrderClient)
    assert isinstance(sdk.customer, shop.CustomerClient)
    assert isinstance(sdk.pricing_service, shop.PricingServiceClient)
    assert asyncio.run(sdk.pricing_service.quote(shop.QuoteRequest(quantity=1))).price == 250


def test_a_request_built_from_another_run_is_accepted(shop: ModuleType) -> None:
    other = generate(EXAMPLES / "shop" / "shop.proto")
    client = shop.PricingServiceClient(InProcessTransport(shop.PricingServiceServer(Pricing())))
    reply = asyncio.run(client.quote(other.QuoteRequest(quantity=2)))
    assert reply.price == 500


def test_a_module_generated_at_runtime_is_served_over_http_alike(shop: ModuleType) -> None:
    import httpx

    from eventstore.rpc import ConnectApp, ConnectTransport

    app = ConnectApp(
        shop.PricingServiceServer(Pricing()),
        shop.OrderCommandServiceServer(AsyncOrders()),
        allow_anonymous=True,
        middlewares=(),
    )

    async def calls() -> tuple[Any, Any, AppError]:
        asgi = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))  # type: ignore[arg-type]
        raw = await asgi.post(
            "http://shop/shop.v1.PricingService/Quote",
            json={"sku": "x", "quantity": 2},
        )
        sdk = shop.SDK(ConnectTransport("http://shop", client=asgi))
        reply = await sdk.pricing_service.quote(shop.QuoteRequest(quantity=3))
        with pytest.raises(AppError) as caught:
            await sdk.order.ship_order(shop.ShipOrderCommand(order_id="o-1"))
        await asgi.aclose()
        return raw, reply, caught.value

    raw, reply, error = asyncio.run(calls())
    assert raw.status_code == 200 and raw.json() == {"price": "500"}
    assert reply.price == 750
    assert (error.code, error.message) == ("NOT_PLACED", "order 'o-1' was never placed")
