"""The brands, domains and phrases the bundled tiny LM's corpus is written from (data only).

Each :class:`Brand` belongs to a domain; the queries, generic lead-ins, neutral replies and tails
of a domain are shared by all its brands (:data:`DOMAIN_QUERIES`, :data:`DOMAIN_LEADS`,
:data:`DOMAIN_NEUTRAL`, :data:`DOMAIN_TAILS`), so that the brand a reply names can only be
learned from the sponsor line. :mod:`market_sim.lm.corpus` draws the documents.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Brand:
    """One fictional advertiser of the corpus.

    Attributes:
        name: The brand name, e.g. ``"Alpha Airlines"``.
        domain: The key of the brand's domain in :data:`DOMAIN_QUERIES`, e.g. ``"hawaii"``.
        context: The canonical sponsor line, ``"<name>: <tagline>."``.
        context_variants: Further sponsor lines for the same brand (also starting with the name).
        openers: Reply clauses naming the brand that can open a sentence (no final period).
        follow_ups: Reply clauses naming the brand that can follow a mention of another brand.
    """

    name: str
    domain: str
    context: str
    context_variants: tuple[str, ...]
    openers: tuple[str, ...]
    follow_ups: tuple[str, ...]

    @property
    def contexts(self) -> tuple[str, ...]:
        """All sponsor lines of the brand, the canonical one first."""
        return (self.context, *self.context_variants)


BRANDS: tuple[Brand, ...] = (
    # --- hawaii (travel) ---------------------------------------------------------------------
    Brand(
        name="Alpha Airlines",
        domain="hawaii",
        context="Alpha Airlines: nonstop flights to Hawaii.",
        context_variants=(
            "Alpha Airlines: daily nonstop flights to Honolulu and Maui.",
            "Alpha Airlines: low fares to Hawaii, always nonstop.",
        ),
        openers=(
            "Alpha Airlines flies nonstop to Hawaii",
            "fly nonstop to Hawaii with Alpha Airlines",
            "Alpha Airlines has low fares to Honolulu and Maui",
            "book a nonstop flight on Alpha Airlines",
            "fly there nonstop with Alpha Airlines",
        ),
        follow_ups=(
            "fly there nonstop with Alpha Airlines",
            "Alpha Airlines flies you there nonstop",
            "get there on a nonstop Alpha Airlines flight",
            "book your flight with Alpha Airlines",
        ),
    ),
    Brand(
        name="Beta Resort",
        domain="hawaii",
        context="Beta Resort: beachfront rooms on Maui.",
        context_variants=(
            "Beta Resort: oceanfront suites and pools on Maui.",
            "Beta Resort: relaxing beachfront stays on Maui.",
        ),
        openers=(
            "Beta Resort has beachfront rooms on Maui",
            "relax at Beta Resort on Maui",
            "stay at Beta Resort, right on the beach in Maui",
            "Beta Resort offers oceanfront suites on Maui",
            "book a beachfront room at Beta Resort",
        ),
        follow_ups=(
            "relax at Beta Resort on Maui",
            "stay at Beta Resort on the beach",
            "Beta Resort has beachfront rooms on Maui",
            "unwind at Beta Resort by the ocean",
        ),
    ),
    Brand(
        name="Coral Air",
        domain="hawaii",
        context="Coral Air: cheap flights to the Hawaiian islands.",
        context_variants=(
            "Coral Air: budget fares to Honolulu.",
            "Coral Air: island hopping flights across Hawaii.",
        ),
        openers=(
            "Coral Air has cheap flights to the islands",
            "fly to Honolulu for less with Coral Air",
            "Coral Air offers budget fares to Hawaii",
            "hop between the islands on Coral Air",
        ),
        follow_ups=(
            "fly there for less with Coral Air",
            "Coral Air has cheap flights there",
            "hop between islands on Coral Air",
        ),
    ),
    Brand(
        name="Palm Cove Resort",
        domain="hawaii",
        context="Palm Cove Resort: family suites on Oahu.",
        context_variants=(
            "Palm Cove Resort: kid friendly pools on Oahu.",
            "Palm Cove Resort: quiet ocean view villas on Oahu.",
        ),
        openers=(
            "Palm Cove Resort has family suites on Oahu",
            "stay at Palm Cove Resort on Oahu",
            "Palm Cove Resort offers ocean view villas",
            "book a suite at Palm Cove Resort",
        ),
        follow_ups=(
            "stay at Palm Cove Resort on Oahu",
            "Palm Cove Resort has family suites there",
            "relax by the pool at Palm Cove Resort",
        ),
    ),
    Brand(
        name="Reef Tours",
        domain="hawaii",
        context="Reef Tours: snorkel trips on Maui.",
        context_variants=(
            "Reef Tours: guided snorkel and boat tours in Hawaii.",
            "Reef Tours: whale watching cruises on Maui.",
        ),
        openers=(
            "Reef Tours runs snorkel trips on Maui",
            "go snorkeling with Reef Tours",
            "Reef Tours offers boat tours along the coast",
            "see the whales with Reef Tours",
        ),
        follow_ups=(
            "go snorkeling with Reef Tours",
            "Reef Tours can take you snorkeling",
            "book a boat tour with Reef Tours",
        ),
    ),
    # --- food ----------------------------------------------------------------------------------
    Brand(
        name="Rocket Pizza",
        domain="food",
        context="Rocket Pizza: hot pizza delivered in thirty minutes.",
        context_variants=(
            "Rocket Pizza: fast delivery of wood fired pizza.",
            "Rocket Pizza: two large pizzas for one low price.",
        ),
        openers=(
            "Rocket Pizza delivers hot pizza in thirty minutes",
            "order a wood fired pizza from Rocket Pizza",
            "Rocket Pizza has two large pizzas for one low price",
            "get fast delivery from Rocket Pizza",
        ),
        follow_ups=(
            "order a pizza from Rocket Pizza",
            "Rocket Pizza delivers in thirty minutes",
            "add a hot pizza from Rocket Pizza",
        ),
    ),
    Brand(
        name="Green Bowl",
        domain="food",
        context="Green Bowl: fresh salads and grain bowls.",
        context_variants=(
            "Green Bowl: healthy bowls delivered to your door.",
            "Green Bowl: vegan and gluten free lunch bowls.",
        ),
        openers=(
            "Green Bowl makes fresh salads and grain bowls",
            "order a healthy bowl from Green Bowl",
            "Green Bowl delivers vegan lunch bowls",
            "try a fresh salad from Green Bowl",
        ),
        follow_ups=(
            "grab a fresh salad from Green Bowl",
            "Green Bowl has healthy grain bowls",
            "order a side salad from Green Bowl",
        ),
    ),
    Brand(
        name="Sunny Bakery",
        domain="food",
        context="Sunny Bakery: fresh bread and cakes every morning.",
        context_variants=(
            "Sunny Bakery: birthday cakes made to order.",
            "Sunny Bakery: warm croissants and coffee.",
        ),
        openers=(
            "Sunny Bakery bakes fresh bread every morning",
            "order a cake from Sunny Bakery",
            "Sunny Bakery makes birthday cakes to order",
            "pick up warm croissants at Sunny Bakery",
        ),
        follow_ups=(
            "finish with a cake from Sunny Bakery",
            "Sunny Bakery has fresh desserts",
            "add warm bread from Sunny Bakery",
        ),
    ),
    # --- tech ----------------------------------------------------------------------------------
    Brand(
        name="Nimbus Laptops",
        domain="tech",
        context="Nimbus Laptops: light laptops with all day battery.",
        context_variants=(
            "Nimbus Laptops: student discounts on thin laptops.",
            "Nimbus Laptops: quiet laptops that last all day.",
        ),
        openers=(
            "Nimbus Laptops makes light laptops with all day battery",
            "get a thin laptop from Nimbus Laptops",
            "Nimbus Laptops has student discounts",
            "try a Nimbus Laptops model that lasts all day",
        ),
        follow_ups=(
            "take a light laptop from Nimbus Laptops",
            "Nimbus Laptops lasts all day",
            "pick a thin laptop from Nimbus Laptops",
        ),
    ),
    Brand(
        name="Vertex Computers",
        domain="tech",
        context="Vertex Computers: fast gaming PCs built to order.",
        context_variants=(
            "Vertex Computers: custom desktops with top graphics.",
            "Vertex Computers: powerful PCs for work and play.",
        ),
        openers=(
            "Vertex Computers builds fast gaming PCs to order",
            "get a custom desktop from Vertex Computers",
            "Vertex Computers has PCs with top graphics",
            "build your dream PC with Vertex Computers",
        ),
        follow_ups=(
            "build a fast desktop with Vertex Computers",
            "Vertex Computers makes powerful PCs",
            "get a gaming PC from Vertex Computers",
        ),
    ),
    # --- finance -------------------------------------------------------------------------------
    Brand(
        name="Cedar Bank",
        domain="finance",
        context="Cedar Bank: savings accounts with no monthly fees.",
        context_variants=(
            "Cedar Bank: high interest savings, no fees.",
            "Cedar Bank: open an account online in minutes.",
        ),
        openers=(
            "Cedar Bank has savings accounts with no monthly fees",
            "open a free account at Cedar Bank",
            "Cedar Bank pays high interest on savings",
            "save more with Cedar Bank",
        ),
        follow_ups=(
            "keep your savings at Cedar Bank",
            "Cedar Bank has no monthly fees",
            "open a savings account at Cedar Bank",
        ),
    ),
    Brand(
        name="Summit Invest",
        domain="finance",
        context="Summit Invest: low cost index funds for beginners.",
        context_variants=(
            "Summit Invest: start investing with just ten dollars.",
            "Summit Invest: simple retirement plans online.",
        ),
        openers=(
            "Summit Invest offers low cost index funds",
            "start investing with Summit Invest",
            "Summit Invest lets you begin with ten dollars",
            "plan for retirement with Summit Invest",
        ),
        follow_ups=(
            "invest the rest with Summit Invest",
            "Summit Invest has low cost index funds",
            "grow your money with Summit Invest",
        ),
    ),
    # --- fitness -------------------------------------------------------------------------------
    Brand(
        name="Iron Peak Gym",
        domain="fitness",
        context="Iron Peak Gym: open all night with free classes.",
        context_variants=(
            "Iron Peak Gym: personal trainers and free classes.",
            "Iron Peak Gym: first month free for new members.",
        ),
        openers=(
            "Iron Peak Gym is open all night with free classes",
            "join Iron Peak Gym for a free first month",
            "Iron Peak Gym has personal trainers",
            "train with a coach at Iron Peak Gym",
        ),
        follow_ups=(
            "join a free class at Iron Peak Gym",
            "Iron Peak Gym has trainers to help",
            "lift weights at Iron Peak Gym",
        ),
    ),
    Brand(
        name="FlexFit App",
        domain="fitness",
        context="FlexFit App: home workouts in twenty minutes a day.",
        context_variants=(
            "FlexFit App: guided home workouts, no gear needed.",
            "FlexFit App: yoga and strength plans on your phone.",
        ),
        openers=(
            "FlexFit App has home workouts in twenty minutes a day",
            "try a guided workout on FlexFit App",
            "FlexFit App offers yoga and strength plans",
            "work out at home with FlexFit App",
        ),
        follow_ups=(
            "follow a plan on FlexFit App",
            "FlexFit App guides you at home",
            "stretch with FlexFit App",
        ),
    ),
    # --- retail --------------------------------------------------------------------------------
    Brand(
        name="Trailhead Outfitters",
        domain="retail",
        context="Trailhead Outfitters: hiking boots and rain jackets.",
        context_variants=(
            "Trailhead Outfitters: outdoor gear on sale this week.",
            "Trailhead Outfitters: running shoes and trail gear.",
        ),
        openers=(
            "Trailhead Outfitters sells hiking boots and rain jackets",
            "shop outdoor gear at Trailhead Outfitters",
            "Trailhead Outfitters has running shoes on sale",
            "find trail gear at Trailhead Outfitters",
        ),
        follow_ups=(
            "pick up boots at Trailhead Outfitters",
            "Trailhead Outfitters has rain jackets",
            "find gear at Trailhead Outfitters",
        ),
    ),
    Brand(
        name="Urban Thread",
        domain="retail",
        context="Urban Thread: everyday clothes at fair prices.",
        context_variants=(
            "Urban Thread: warm winter coats on sale.",
            "Urban Thread: free returns on all clothes.",
        ),
        openers=(
            "Urban Thread has everyday clothes at fair prices",
            "shop warm coats at Urban Thread",
            "Urban Thread offers free returns on all clothes",
            "refresh your closet with Urban Thread",
        ),
        follow_ups=(
            "find a coat at Urban Thread",
            "Urban Thread has fair prices",
            "shop basics at Urban Thread",
        ),
    ),
    # --- pets ----------------------------------------------------------------------------------
    Brand(
        name="Happy Paws",
        domain="pets",
        context="Happy Paws: healthy food for dogs and cats.",
        context_variants=(
            "Happy Paws: pet food delivered every month.",
            "Happy Paws: toys and treats for happy pets.",
        ),
        openers=(
            "Happy Paws makes healthy food for dogs and cats",
            "order pet food from Happy Paws",
            "Happy Paws delivers treats every month",
            "spoil your pet with Happy Paws",
        ),
        follow_ups=(
            "feed them well with Happy Paws",
            "Happy Paws has healthy treats",
            "order toys from Happy Paws",
        ),
    ),
    Brand(
        name="Whisker Vet Clinic",
        domain="pets",
        context="Whisker Vet Clinic: friendly vets open on weekends.",
        context_variants=(
            "Whisker Vet Clinic: checkups and shots for pets.",
            "Whisker Vet Clinic: same day visits for sick pets.",
        ),
        openers=(
            "Whisker Vet Clinic has friendly vets open on weekends",
            "book a checkup at Whisker Vet Clinic",
            "Whisker Vet Clinic offers same day visits",
            "visit the vets at Whisker Vet Clinic",
        ),
        follow_ups=(
            "book a checkup at Whisker Vet Clinic",
            "Whisker Vet Clinic is open on weekends",
            "see a vet at Whisker Vet Clinic",
        ),
    ),
    # --- education -----------------------------------------------------------------------------
    Brand(
        name="Lingo Lab",
        domain="education",
        context="Lingo Lab: learn a language in ten minutes a day.",
        context_variants=(
            "Lingo Lab: speak Spanish or French with fun lessons.",
            "Lingo Lab: language lessons on your phone.",
        ),
        openers=(
            "Lingo Lab teaches a language in ten minutes a day",
            "learn Spanish with Lingo Lab",
            "Lingo Lab has fun lessons on your phone",
            "practice French every day with Lingo Lab",
        ),
        follow_ups=(
            "practice words with Lingo Lab",
            "Lingo Lab makes lessons fun",
            "learn a new language with Lingo Lab",
        ),
    ),
    Brand(
        name="Brightpath Tutors",
        domain="education",
        context="Brightpath Tutors: one on one math tutoring online.",
        context_variants=(
            "Brightpath Tutors: expert tutors for every subject.",
            "Brightpath Tutors: test prep with live tutors.",
        ),
        openers=(
            "Brightpath Tutors offers one on one math tutoring",
            "get a live tutor from Brightpath Tutors",
            "Brightpath Tutors has experts for every subject",
            "prepare for tests with Brightpath Tutors",
        ),
        follow_ups=(
            "get help from Brightpath Tutors",
            "Brightpath Tutors has live tutors",
            "book a tutor at Brightpath Tutors",
        ),
    ),
)
"""The brand catalogue; the first two are the flagship Hawaii advertisers."""


DOMAIN_QUERIES: dict[str, tuple[str, ...]] = {
    "hawaii": (
        "vacation in Hawaii",
        "family trip to Maui",
        "honeymoon in Hawaii",
        "cheap flights to Honolulu",
        "best beaches in Hawaii",
        "weekend getaway to Maui",
        "where to stay in Hawaii",
        "Hawaii travel tips",
        "romantic trip to Maui",
        "things to do on Maui",
        "planning a trip to Hawaii",
        "spring break in Hawaii",
    ),
    "food": (
        "quick dinner tonight",
        "pizza delivery near me",
        "healthy lunch ideas",
        "food for a party",
        "what should I eat tonight",
        "birthday party food",
        "cheap takeout",
    ),
    "tech": (
        "best laptop for college",
        "new computer for gaming",
        "laptop with long battery life",
        "which computer should I buy",
        "computer for video editing",
        "cheap laptop for work",
    ),
    "finance": (
        "how to start saving money",
        "best savings account",
        "investing for beginners",
        "open a bank account",
        "saving for retirement",
        "where to keep my savings",
    ),
    "fitness": (
        "how to get in shape",
        "gym near me",
        "home workout plan",
        "lose weight before summer",
        "build muscle fast",
        "easy exercise routine",
    ),
    "retail": (
        "new running shoes",
        "clothes for a hiking trip",
        "winter jacket sale",
        "where to buy boots",
        "cheap everyday clothes",
        "gear for camping",
    ),
    "pets": (
        "best food for my dog",
        "my cat seems sick",
        "new puppy checklist",
        "healthy treats for cats",
        "vet open on weekends",
        "taking care of a kitten",
    ),
    "education": (
        "learn Spanish fast",
        "help with math homework",
        "study tips for exams",
        "learn a new language",
        "tutor for my kid",
        "prepare for the SAT",
    ),
}
"""User queries per domain, shared by all brands of the domain."""


DOMAIN_LEADS: dict[str, tuple[str, ...]] = {
    "hawaii": ("Aloha!", "Great choice!", "Hawaii is perfect for that.", "Sounds wonderful!"),
    "food": ("Good idea!", "Hungry?", "Easy fix!", "Sounds tasty!"),
    "tech": ("Good question!", "Great pick!", "Smart choice!", "Easy answer!"),
    "finance": ("Smart move!", "Good plan!", "Great question!", "Start simple."),
    "fitness": ("Let's go!", "Great goal!", "You can do it!", "Good plan!"),
    "retail": ("Good timing!", "Great idea!", "Shop smart!", "Nice choice!"),
    "pets": ("Good idea!", "Lucky pet!", "Great question!", "Sounds good!"),
    "education": ("Great goal!", "Good idea!", "You can do it!", "Smart plan!"),
}
"""Short brand-free openers that may precede a brand mention."""


DOMAIN_NEUTRAL: dict[str, tuple[str, ...]] = {
    "hawaii": (
        "Hawaii has warm beaches, friendly towns and great hiking.",
        "Maui is lovely in spring, with calm seas and fewer crowds.",
        "Book flights early and compare hotels for the best deals.",
        "Try snorkeling, visit a volcano and watch the sunset.",
        "Pack sunscreen, a hat and light clothes for the islands.",
        "Oahu is busy and fun, while Kauai is quiet and green.",
        "Rent a car to explore the coast at your own pace.",
    ),
    "food": (
        "A simple pasta with vegetables takes twenty minutes.",
        "Check local reviews to find a good place nearby.",
        "Tacos and salads are easy to share at a party.",
        "Cook a big batch of soup and save some for later.",
        "Order early on busy nights to avoid long waits.",
    ),
    "tech": (
        "Look for at least eight hours of battery and a light build.",
        "Compare the processor, memory and screen before you buy.",
        "Gaming needs a strong graphics card and good cooling.",
        "Read reviews and set a budget before you shop.",
        "A solid state drive makes any computer feel faster.",
    ),
    "finance": (
        "Set aside a small amount from every paycheck.",
        "Build an emergency fund before you invest.",
        "Compare interest rates and fees between accounts.",
        "Index funds are a simple, low cost way to start.",
        "Track your spending for a month to find savings.",
    ),
    "fitness": (
        "Start with short walks and add a little every week.",
        "Mix strength training with cardio and good sleep.",
        "Drink water and eat more vegetables and protein.",
        "Three short workouts a week is a great start.",
        "Stretch after exercise to stay loose and avoid injury.",
    ),
    "retail": (
        "Try shoes on late in the day when your feet are larger.",
        "Layers work best for changing weather on the trail.",
        "End of season sales often have the best prices.",
        "Check the return policy before you buy online.",
        "Buy fewer, better pieces that last for years.",
    ),
    "pets": (
        "Feed your pet on a regular schedule with fresh water.",
        "Call a vet if your pet stops eating or seems tired.",
        "A new puppy needs a bed, toys and patient training.",
        "Regular checkups help catch problems early.",
        "Short daily walks keep dogs happy and healthy.",
    ),
    "education": (
        "Practice a little every day instead of cramming.",
        "Review your notes and test yourself with flash cards.",
        "Listen to simple podcasts to learn a new language.",
        "Break big problems into small steps and take breaks.",
        "Sleep well before an exam to remember more.",
    ),
}
"""Brand-free helpful sentences per domain, used for unsponsored replies and ad tails."""


DOMAIN_TAILS: dict[str, tuple[str, ...]] = {
    "hawaii": ("Book today!", "Aloha awaits.", "Enjoy the islands!", "Book early for deals."),
    "food": ("Enjoy your meal!", "Order now!", "Bon appetit!"),
    "tech": ("Shop today!", "Order yours now.", "Enjoy the upgrade!"),
    "finance": ("Start today!", "Your future self will thank you.", "Sign up online."),
    "fitness": ("Start today!", "You've got this!", "Join now."),
    "retail": ("Shop now!", "Happy shopping!", "Sale ends soon."),
    "pets": ("Your pet will thank you!", "Order today.", "Book now."),
    "education": ("Start today!", "Good luck!", "Sign up now."),
}
"""Short brand-free closers that may follow an ad."""


def brands_in(domain: str) -> tuple[Brand, ...]:
    """Return the brands of one domain, in catalogue order."""
    return tuple(brand for brand in BRANDS if brand.domain == domain)


def brand_by_name(name: str) -> Brand:
    """Look a brand up by its name.

    Raises:
        KeyError: If no brand has this name.
    """
    for brand in BRANDS:
        if brand.name == name:
            return brand
    raise KeyError(name)
