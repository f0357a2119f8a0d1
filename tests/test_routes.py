"""Route templates: typed segments, slug folding by cardinality, hints,
bounded memory and masked paths that never carry a value."""
import random
import string
import uuid

import pytest

from sensor.enrich.routes import RouteLearner, load_hints, parse_hints, segment_type


def learn(paths, host="shop.example", learner=None):
    learner = learner or RouteLearner()
    for path in paths:
        learner.observe(host, path)
    return learner


def route(learner, path, host="shop.example"):
    return learner.resolve(host, path).route


@pytest.mark.parametrize("seg, expected", [
    ("12345", "integer"), ("-3.75", "float"), ("4111-1111-1111-1111", "payment_card"),
    ("123e4567-e89b-12d3-a456-426614174000", "uuid"), ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
    ("5f8d0d55b54764421b7156c3", "hex"), ("alice@example.com", "email"), ("alice%40example.com", "encoded"),
    ("bob@corp", "at"), ("2024-01-31", "date"), ("GB82WEST12345698765432", "iban"), ("+14155550123", "phone"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "jwt"), ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "base64"),
    ("order-123456", "digits"), ("app.3f9a8b7c.js", "hex"), ("k3j4h5g6f7d8s9a0q-x", "token"),
    ("1234.56-7", "number"), ("x" * 101, "long"), ("x9f3k", "token"), ("s3cr3tT0ken", "token"),
    ("a1b2c3", "token"), ("k8s", None), ("i18n", None), ("oauth2callback", None), ("x86_64", None),
    ("users", None), ("v1", None), ("v2beta", None), ("openapi.json", None), ("my-first-post-2024", None),
    ("oauth2-authorization-server", None), ("getUserAccountSettingsById", None), ("true", None),
])
def test_segment_types(seg, expected):
    assert segment_type(seg) == expected


def test_typed_segments_are_parameters_at_once():
    learner = learn(["/orders/12345", "/users/123e4567-e89b-12d3-a456-426614174000/avatar"])
    r = learner.resolve("shop.example", "/orders/12345")
    assert (r.route, r.masked, r.confidence) == ("/orders/{orderId}", "/orders/{orderId}", 1.0)
    assert r.settled
    # a value never observed is still a parameter
    r = learner.resolve("shop.example", "/orders/98765")
    assert r.route == "/orders/{orderId}" and r.settled
    assert route(learner, "/users/123e4567-e89b-12d3-a456-426614174000/avatar") == "/users/{userId}/avatar"


def test_slugs_fold_after_enough_distinct_values_and_not_before():
    learner = RouteLearner()
    slugs = [f"{w}-{v}" for w, v in zip(["red", "green", "blue", "cyan", "teal", "pink"] * 3, string.ascii_lowercase)]
    for slug in slugs[:10]:
        learner.observe("h", f"/posts/{slug}")
    first = learner.resolve("h", f"/posts/{slugs[0]}")
    assert first.route == f"/posts/{slugs[0]}" and first.masked == first.route
    assert not first.settled and first.confidence < 1
    learner.observe("h", f"/posts/{slugs[10]}")
    for slug in slugs[:11]:
        r = learner.resolve("h", f"/posts/{slug}")
        assert (r.route, r.masked) == ("/posts/{postId}", "/posts/{postId}")
        assert r.settled and 0.5 <= r.confidence < 1
    # more distinct values make it surer
    for slug in slugs[11:]:
        learner.observe("h", f"/posts/{slug}")
    assert learner.resolve("h", "/posts/yet-another").confidence > first.confidence
    assert learner.resolve("h", "/posts/yet-another").settled


PRODUCT = frozenset(("slug", "name", "price", "stock", "updatedAt"))


def test_slugs_whose_responses_share_a_shape_fold_early():
    """Three products answering with one shape are one endpoint, long before
    their count could say so; optional fields may come and go."""
    learner = RouteLearner()
    learner.observe("h", "/products/red-shoes", PRODUCT)
    learner.observe("h", "/products/blue-hat", PRODUCT | {"discount"})
    assert route(learner, "/products/red-shoes", "h") == "/products/red-shoes"
    learner.observe("h", "/products/olive-scarf", PRODUCT - {"stock"})
    for slug in ("red-shoes", "blue-hat", "olive-scarf", "never-seen"):
        r = learner.resolve("h", f"/products/{slug}")
        assert (r.route, r.masked) == ("/products/{productId}", "/products/{productId}")
        assert r.settled and 0 < r.confidence < 1


def test_two_slugs_fold_when_their_responses_have_the_same_rich_shape():
    learner = RouteLearner()
    learner.observe("h", "/categories/books", PRODUCT)
    learner.observe("h", "/categories/garden", PRODUCT)
    assert route(learner, "/categories/books", "h") == "/categories/{categoryId}"
    # a poorer shape, or one key path apart, is not enough with two
    for path, shape in (("/teams/alpha", frozenset(("id", "name", "size"))), ("/teams/beta", frozenset(("id", "name", "size"))),
                        ("/regions/north", PRODUCT), ("/regions/south", PRODUCT | {"discount"})):
        learner.observe("h", path, shape)
    assert route(learner, "/teams/alpha", "h") == "/teams/alpha"
    assert route(learner, "/regions/north", "h") == "/regions/north"


def test_siblings_of_different_shapes_or_under_a_namespace_stay_literal():
    learner = RouteLearner()
    shapes = [PRODUCT, frozenset(("total", "items", "items[].id", "items[].sku")),
              frozenset(("enabled", "limits", "limits.daily", "region"))]
    for name, shape in zip(("catalog", "orders", "settings-page"), shapes):
        learner.observe("h", f"/shop/{name}", shape)
    assert route(learner, "/shop/orders", "h") == "/shop/orders"
    # resource names under the root, a namespace or a version answer alike
    # (list envelopes) and still are names
    for name in ("widgets", "gadgets", "gizmos", "doodads"):
        learner.observe("h", f"/api/v1/{name}", PRODUCT)
        learner.observe("h", f"/{name}", PRODUCT)
    assert route(learner, "/api/v1/gizmos", "h") == "/api/v1/gizmos"
    assert route(learner, "/gizmos", "h") == "/gizmos"
    # sub-resources after a parameter too
    for what in ("contacts", "devices", "addresses"):
        learner.observe("h", f"/users/42/{what}", PRODUCT)
    assert route(learner, "/users/42/devices", "h") == "/users/{userId}/devices"


def test_a_hot_value_folds_with_the_rare_ones():
    learner = learn(["/users/alice"] * 30 + [f"/users/user-{c}" for c in "abcdefghijk"])
    assert route(learner, "/users/alice") == "/users/{userId}"


def test_sibling_resources_stay_literal():
    resources = ["users", "orders", "products"]
    learner = learn([f"/shop/{r}" for r in resources] * 40)
    for r in resources:
        res = learner.resolve("shop.example", f"/shop/{r}")
        assert res.route == f"/shop/{r}" and res.settled and res.confidence == 1.0
    # many resource names under a namespace, each called once in a burst (an app starting up)
    many = ["users", "orders", "products", "carts", "stats", "config", "alerts", "teams", "invoices",
            "coupons", "reviews", "brands", "stores", "banners", "pages"]
    learner = learn([f"/api/{r}" for r in many])
    assert {route(learner, f"/api/{r}") for r in many} == {f"/api/{r}" for r in many}
    # twelve resources under a plain parent, each used a while before the next appears
    learner = learn([f"/catalog/{r}" for r in many[:12] for _ in range(20)])
    assert {route(learner, f"/catalog/{r}") for r in many[:12]} == {f"/catalog/{r}" for r in many[:12]}


def test_siblings_going_different_ways_are_not_folded():
    sections = [f"part{c}" for c in "abcdefghijkl"]
    paths = [f"/docs/{s}/{('intro', 'setup', 'faq')[i % 3]}" for i, s in enumerate(sections)]
    learner = learn(paths)
    assert {route(learner, p) for p in paths} == set(paths)
    # the same siblings all going one way are values
    learner = learn([f"/docs/{s}/intro" for s in sections])
    assert route(learner, "/docs/parta/intro") == "/docs/{docId}/intro"


SUBRESOURCES = ["issues", "pulls", "commits", "branches", "tags", "releases", "contents", "actions", "hooks",
                "keys", "forks", "stargazers", "topics", "labels"]


def test_subresources_after_a_parameter_stay_literal():
    rnd = random.Random(3)
    paths = [f"/repos/101/{sub}" for sub in SUBRESOURCES]    # one client walks them all first
    for repo in range(102, 130):
        paths += [f"/repos/{repo}/{sub}" for sub in rnd.sample(SUBRESOURCES, 4)]
    learner = learn(paths)
    for sub in SUBRESOURCES:
        r = learner.resolve("shop.example", f"/repos/777/{sub}")
        assert r.route == f"/repos/{{repoId}}/{sub}" and r.settled


def test_slugs_after_slugs_fold_level_by_level():
    rnd = random.Random(4)
    owners = ["".join(rnd.choices(string.ascii_lowercase, k=7)) for _ in range(15)]
    paths = [f"/repos/{owner}/{''.join(rnd.choices(string.ascii_lowercase, k=6))}" for owner in owners
             for _ in range(3)]
    learner = learn(paths)
    assert {route(learner, p) for p in paths} == {"/repos/{repoId}/{id}"}
    r = learner.resolve("shop.example", paths[0])
    assert r.settled and r.masked == "/repos/{repoId}/{id}"


def test_a_position_past_max_distinct_holds_values():
    learner = learn([f"/api/{w}" for w in ("".join(random.Random(i).choices("xyz", k=9)) for i in range(200))])
    assert route(learner, "/api/xyzzyx") == "/api/{id}"
    assert len(learner.trees["shop.example"].root.children["api"].children) == 0


def test_versions_and_known_literals_are_kept():
    learner = learn(["/v1/users/7", "/api/v2beta/users/8", "/api/2024-01-01/charges/9", "/api/1.2/items/3",
                     "/reports/2024-01-31", "/users/me", "/openapi.json", "/health"])
    assert route(learner, "/v1/users/7") == "/v1/users/{userId}"
    assert route(learner, "/api/v2beta/users/8") == "/api/v2beta/users/{userId}"
    assert route(learner, "/api/2024-01-01/charges/9") == "/api/2024-01-01/charges/{chargeId}"
    assert route(learner, "/api/1.2/items/3") == "/api/1.2/items/{itemId}"
    assert route(learner, "/reports/2024-01-31") == "/reports/{reportId}"      # a date elsewhere is a value
    for path in ("/users/me", "/openapi.json", "/health"):
        r = learner.resolve("shop.example", path)
        assert r.route == path and r.settled and r.confidence == 1.0


def test_parameter_names():
    learner = learn(["/categories/42", "/addresses/7", "/order-items/5", "/42", "/api/9", "/items/1/items/2",
                     "/users/5/3", "/boxes/4"])
    assert route(learner, "/categories/42") == "/categories/{categoryId}"
    assert route(learner, "/addresses/7") == "/addresses/{addressId}"
    assert route(learner, "/order-items/5") == "/order-items/{orderItemId}"
    assert route(learner, "/boxes/4") == "/boxes/{boxId}"
    assert route(learner, "/42") == "/{id}"
    assert route(learner, "/api/9") == "/api/{id}"
    assert route(learner, "/items/1/items/2") == "/items/{itemId}/items/{itemId2}"
    assert route(learner, "/users/5/3") == "/users/{userId}/{id}"


def test_paths_are_normalised_and_hosts_case_insensitive():
    learner = learn(["//users///42/"], host="Shop.Example")
    r = learner.resolve("shop.example", "/users/42")
    assert (r.route, r.masked) == ("/users/{userId}", "/users/{userId}")
    assert learner.resolve("SHOP.example", "/users/42/") == r
    assert learner.resolve("", "/").route == "/" and learner.resolve("", "/").settled


HINTS = """
# user hints
/post/{postId}
/users/{userId}
=/users/admin          # a real page, not a user
=/tags/featured
=/files/12345
api.example.com /v1/things/{thingKey}
"""


def test_hints_force_parameters_and_pin_literals(tmp_path):
    path = tmp_path / "routes.hints"
    path.write_text(HINTS)
    learner = RouteLearner(load_hints(path))
    for p in ["/post/hello-world", "/users/admin", "/users/alice", "/users/me", "/v1/things/red"]:
        learner.observe("shop.example", p)
    r = learner.resolve("shop.example", "/post/hello-world")
    assert (r.route, r.masked, r.confidence, r.settled) == ("/post/{postId}", "/post/{postId}", 1.0, True)
    assert route(learner, "/users/admin") == "/users/admin"
    assert route(learner, "/users/alice") == "/users/{userId}"
    assert route(learner, "/users/me") == "/users/{userId}"      # the hint wins over the known word
    # a literal marker wins over cardinality
    tags = [f"/tags/{w}" for w in ("news", "sport", "tech", "food", "art", "music", "travel", "games", "books",
                                   "film", "science", "health-care", "fashion", "garden")]
    learn(tags + ["/tags/featured"] * 3, learner=learner)
    assert route(learner, "/tags/music") == "/tags/{tagId}"
    assert route(learner, "/tags/featured") == "/tags/featured"
    # a hinted literal that looks like a value stays in the route, never in the masked path
    learner.observe("shop.example", "/files/12345")
    r = learner.resolve("shop.example", "/files/12345")
    assert (r.route, r.masked) == ("/files/12345", "/files/{fileId}")
    # host hints apply to their host only (with or without a port)
    learner.observe("api.example.com:8443", "/v1/things/red")
    assert route(learner, "/v1/things/red", host="api.example.com:8443") == "/v1/things/{thingKey}"
    assert route(learner, "/v1/things/red") == "/v1/things/red"


@pytest.mark.parametrize("text, line", [
    ("/ok/{id}\n/users/{user id}", 2),
    ("# c\n\nusers/{id}", 3),
    ("/a/*", 1),
    ("=/users/{id}", 1),
    ("host /a/{x} extra", 1),
    ("/users/{id\n", 1),
    ("/users/{userId}\n/users/{uid}/x", 2),
])
def test_malformed_hints_name_their_line(text, line):
    with pytest.raises(ValueError, match=rf"hints:{line}:"):
        parse_hints(text, "hints")


def walk(node):
    yield node
    for child in node.children.values():
        yield from walk(child)
    if node.param is not None:
        yield from walk(node.param)


def test_memory_is_bounded_under_random_paths():
    rnd = random.Random(5)
    learner = RouteLearner(max_nodes=2000)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(3, 9))) for _ in range(5000)]
    for _ in range(100_000):
        segs = [rnd.choice(words) if rnd.random() < 0.8 else f"v{rnd.randrange(1000)}"
                for _ in range(rnd.randint(1, 6))]
        learner.observe("h", "/" + "/".join(segs))
    assert 0 < learner.node_count("h") <= 2000
    assert learner.node_count() == learner.node_count("h")
    for node in walk(learner.trees["h"].root):
        assert sum(not c.pinned for c in node.children.values()) <= learner.max_distinct
    r = learner.resolve("h", "/zzzzzz/v3000/12345")
    assert "12345" not in r.masked
    # hosts past max_hosts share one tree
    learner = RouteLearner(max_hosts=3)
    for i in range(10):
        learner.observe(f"host{i}", "/orders/1")
    assert len(learner.trees) == 3
    assert learner.resolve("host9", "/orders/1").route == "/orders/{orderId}"
    # a very long segment is a value, not a key kept in memory
    assert learner.resolve("host0", "/" + "word-" * 40).route == "/{id}"


PLANTED = [
    "12345", "4111111111111111", "4111-1111-1111-1111", "123e4567-e89b-12d3-a456-426614174000",
    "01ARZ3NDEKTSV4RRFFQ69G5FAV", "alice@example.com", "alice%40example.com", "bob@corp",
    "DE89370400440532013000", "GB82WEST12345698765432",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "5f8d0d55b54764421b7156c3",
    "2024-01-31", "+14155550123", "123-45-6789", "192.168.1.10", "3.1415926", "dGhpc0lzQVNlY3JldFRva2Vu",
    "AKIAIOSFODNN7EXAMPLE", "John%20Smith", "a1b2c3d4e5f6a7b8",
]


def test_masked_paths_never_carry_planted_values():
    learner = learn(["/users/alice", "/users/bob", "/api/v1/accounts/7"])
    for value in PLANTED:
        for template in ("/{}", "/users/{}", "/users/{}/orders", "/api/v1/accounts/{}/cards/{}",
                         "/unseen/deep/{}/x", "/v2/{}"):
            if value == "2024-01-31" and template == "/{}":
                continue        # a date right after the root is an API version
            path = template.format(value, value)
            for observed in (False, True):
                if observed:
                    learner.observe("shop.example", path)
                r = learner.resolve("shop.example", path)
                assert value not in r.masked, (path, r)
                assert value not in r.route, (path, r)


SHOP_ROUTES = {
    "/api/v1/products": lambda r: "/api/v1/products",
    "/api/v1/products/{productId}": lambda r: f"/api/v1/products/{r.randrange(1, 10**6)}",
    "/api/v1/products/{productId}/reviews": lambda r: f"/api/v1/products/{r.randrange(1, 10**6)}/reviews",
    "/api/v1/products/{productId}/reviews/{reviewId}":
        lambda r: f"/api/v1/products/{r.randrange(1, 10**6)}/reviews/{uuid.UUID(int=r.getrandbits(128))}",
    "/api/v1/categories": lambda r: "/api/v1/categories",
    "/api/v1/categories/{categoryId}": lambda r: f"/api/v1/categories/{r.choice(CATEGORIES)}",
    "/api/v1/categories/{categoryId}/products": lambda r: f"/api/v1/categories/{r.choice(CATEGORIES)}/products",
    "/api/v1/brands/{brandId}": lambda r: f"/api/v1/brands/{r.choice(BRANDS)}",
    "/api/v1/users/me": lambda r: "/api/v1/users/me",
    "/api/v1/users/{userId}": lambda r: f"/api/v1/users/{uuid.UUID(int=r.getrandbits(128))}",
    "/api/v1/users/{userId}/orders": lambda r: f"/api/v1/users/{uuid.UUID(int=r.getrandbits(128))}/orders",
    "/api/v1/orders/{orderId}": lambda r: f"/api/v1/orders/{r.getrandbits(96):024x}",
    "/api/v1/cart": lambda r: "/api/v1/cart/",
    "/api/v1/cart/items/{itemId}": lambda r: f"/api/v1/cart/items/{r.randrange(1, 500)}",
    "/api/v1/search": lambda r: "/api/v1/search",
    "/health": lambda r: "/health",
}
CATEGORIES = [f"{a}-{b}" for a in ("garden", "kitchen", "office", "outdoor", "kids", "pets", "home", "auto")
              for b in ("tools", "decor", "supplies", "gear", "care")]
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
          "soylent", "aperture", "gringotts", "oscorp", "vandelay", "monarch", "duff", "krusty", "nakatomi", "zorg"]


def test_shop_traffic_yields_its_route_set():
    rnd = random.Random(7)
    requests = [(name, make(rnd)) for name, make in rnd.choices(list(SHOP_ROUTES.items()), k=4000)]
    learner = RouteLearner()
    for _, path in requests:
        learner.observe("shop.example", path)
    got = {}
    for name, path in requests:
        r = learner.resolve("shop.example", path)
        assert r.settled
        got.setdefault(r.route, set()).add(name)
    assert got == {name: {name} for name in SHOP_ROUTES}


def test_people_handles_masked_from_the_first_request():
    """/users/alice: a person's handle is a value before any learner could
    tell, so it never appears; well-known literals (/users/me) stay."""
    learner = RouteLearner()
    for path in ("/users/alice", "/api/v1/customers/jane-doe/cards", "/users/me"):
        learner.observe("h", path)
    assert learner.resolve("h", "/users/alice").masked == "/users/{userId}"
    assert learner.resolve("h", "/api/v1/customers/jane-doe/cards").masked == "/api/v1/customers/{customerId}/cards"
    assert learner.resolve("h", "/users/me").masked == "/users/me"


def test_learn_is_observe_then_resolve_until_more_cannot_matter():
    rnd = random.Random(8)
    requests = [make(rnd) for make in rnd.choices(list(SHOP_ROUTES.values()), k=1500)]
    learning, observing = RouteLearner(), RouteLearner()
    for path in requests:
        observing.observe("shop.example", path)
        assert learning.learn("shop.example", path) == observing.resolve("shop.example", path)
    # a path told 40 times is counted 32 times: past the settle count more changes nothing
    for _ in range(40):
        learning.learn("h", "/api/v1/ping")
    assert learning.trees["h"].root.children["api"].children["v1"].children["ping"].count == 32
