//! `media-relay`: RTP and RTCP anchored through Tandem (being written for issue 3).
