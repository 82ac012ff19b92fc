# TEMPORARY local stand-in (not committed) until the text branch lands
from collections import namedtuple
DecodedText = namedtuple("DecodedText", "text encoding lossy base64")
def default_mode(): return "utf-8"
def normalize_encoding(label, default=None): return "utf-8"
def decode_text(data, mode): return DecodedText(data.decode("utf-8","replace"), "utf-8", False, None)
def encode_text(text, mode): return text if isinstance(text, bytes) else text.encode()
