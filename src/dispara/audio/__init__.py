"""Audio jobs: text-to-speech (ElevenLabs) and transcription (Groq Whisper), results delivered on WhatsApp."""
