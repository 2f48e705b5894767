"""Hand-written cases with a known answer, worded unlike the generated ones (``assist/seed.py``):
other vocabulary, longer stories, distractors (a police officer in an account takeover, a
preservation request that says "urgent"). Never trained on: a harder held-out set, so the
accuracy figures do not only measure how well a model learnt the generator's templates.
"""

from __future__ import annotations

from assist.seed import Example

_CASES: list[tuple[str, str, str]] = [
    # emergency-disclosure
    ("Detective from Ogdenville PD phoned the LE portal: a 15-year-old ran away with an adult "
     "she met on the app, they need her last known location immediately, no warrant yet",
     "emergency-disclosure", "sev0"),
    ("Sheriff's deputy says a driver is holding a passenger against her will and asks for the "
     "vehicle's live GPS without legal process", "emergency-disclosure", "sev0"),
    ("Exigent circumstances request by fax: suspect threatened to kill his family tonight, "
     "police want subscriber info and recent orders", "emergency-disclosure", "sev0"),
    ("Officer emailed from a gmail address claiming a life-or-death situation and asking for "
     "a customer's phone number right now", "emergency-disclosure", "sev0"),
    ("State police request urgent disclosure of rider trip history to find a missing "
     "elderly man with dementia", "emergency-disclosure", "sev0"),
    # preservation
    ("Letter from the county prosecutor asking us to freeze and keep all records tied to "
     "shopper account 88123 while they get a search warrant", "preservation", "sev2"),
    ("Please hold onto chat logs, photos and location data for order 55-1209; a subpoena "
     "will follow within 90 days", "preservation", "sev2"),
    ("URGENT: keep every record for user u-4491 before your retention job deletes them, a "
     "court order is on its way", "preservation", "sev1"),
    ("Renewal of our earlier 2703(f) letter for another 90 days, same accounts",
     "preservation", "sev2"),
    ("The FBI asks that we not delete the data of two driver accounts pending legal process",
     "preservation", "sev2"),
    # legal-process
    ("Civil subpoena duces tecum for payment records of a customer, production due next "
     "month", "legal-process", "sev3"),
    ("Served today: a search warrant for the contents of messages between two users, with "
     "a gag order", "legal-process", "sev2"),
    ("A 2703(d) order for IP logs and device identifiers of account 7781, respond by the "
     "listed date", "legal-process", "sev2"),
    ("Process server dropped off a state court order requiring delivery history of a "
     "retailer's shopper", "legal-process", "sev2"),
    ("Grand jury subpoena for basic subscriber information, return in 30 days",
     "legal-process", "sev3"),
    # threat-self-harm
    ("In chat a customer wrote that nobody would miss him and he has been saving his pills",
     "threat-self-harm", "sev0"),
    ("Shopper received a message saying 'I know where you live and I'm coming with a gun'",
     "threat-self-harm", "sev0"),
    ("Driver says a rider talked about jumping off the bridge after the drop-off",
     "threat-self-harm", "sev0"),
    ("User posted in reviews that he will blow up the warehouse on Friday",
     "threat-self-harm", "sev0"),
    ("Support agent flagged a goodbye message from a user who said she wants to die",
     "threat-self-harm", "sev0"),
    # child-safety
    ("Moderator found explicit images of what appears to be a young child in an uploaded "
     "product photo", "child-safety", "sev1"),
    ("An adult shopper keeps messaging a 12-year-old customer asking to meet alone",
     "child-safety", "sev1"),
    ("Report that a driver is transporting teenage girls for money between motels, one "
     "said she is 14 and scared", "child-safety", "sev0"),
    ("Hash match on an image in a support ticket attachment (known abuse material)",
     "child-safety", "sev1"),
    ("Parent says a stranger sent sexual messages to her son through the app",
     "child-safety", "sev1"),
    # account-takeover
    ("Customer says her ex changed the delivery address and now watches where she shops; "
     "she no longer receives the login codes", "account-takeover", "sev1"),
    ("Someone added a new device and reset the phone number on a shopper profile, the "
     "real owner is locked out and fears her stalker", "account-takeover", "sev1"),
    ("A police officer reports that his own account was hijacked and used to order to his "
     "victim's house while he is on duty", "account-takeover", "sev1"),
    ("Account credentials stolen; the attacker is pretending to be the shopper and texting "
     "the customer's daughter now", "account-takeover", "sev0"),
    ("Two-factor disabled and email swapped on account 3391; victim reports domestic abuse",
     "account-takeover", "sev1"),
    # physical-safety
    ("Customer says the shopper grabbed her arm and pushed her at the door during the "
     "handoff", "physical-safety", "sev1"),
    ("Shopper reports being followed to his car and punched in the parking lot by the "
     "customer", "physical-safety", "sev1"),
    ("Customer repeatedly made sexual comments to the driver at every delivery",
     "physical-safety", "sev2"),
    ("A dog attack left the shopper with stitches at a customer's home", "physical-safety",
     "sev1"),
    ("Shopper is being attacked right now outside the store, bystanders called 911",
     "physical-safety", "sev0"),
    # product-recall
    ("Manufacturer notice: frozen berries may carry hepatitis A, pull lot 22B from all "
     "stores", "product-recall", "sev1"),
    ("Mislabeled cookies contain undeclared milk; voluntary withdrawal, minor risk",
     "product-recall", "sev2"),
    ("Health department links an E. coli outbreak to bagged lettuce we sold last week",
     "product-recall", "sev1"),
    ("Batteries in a toy overheat; the CPSC asked retailers to stop selling it",
     "product-recall", "sev2"),
    ("Class III recall of canned soup for a labeling error", "product-recall", "sev3"),
]  # fmt: skip


def hand_written() -> list[Example]:
    """The hand-written cases (40: five per shipped playbook)."""
    return [Example(text, playbook, severity) for text, playbook, severity in _CASES]
